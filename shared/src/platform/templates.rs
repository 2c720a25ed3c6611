//! Rendering templates (CONTRACT §9): Jinja syntax through `minijinja`, with the recipient's
//! profile as `user` and the event's data as `data`.
//!
//! - strict: a variable the context lacks is an error naming it ([`TemplateError::Render`]),
//!   for previews and sends alike;
//! - bounded: every render has a fuel budget ([`FUEL`]), so a template with a huge loop is
//!   refused ([`TemplateError::TooExpensive`]) instead of hanging its Lambda;
//! - HTML is escaped in an email's `html` part only, never in a subject, a body, an SMS or a push;
//! - checked on save ([`check`]): a syntax error names its part and line.

use std::collections::BTreeSet;

use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior, Value};

/// The work one part's render may do: about this many instructions, or 64 times as many bytes
/// of output. Ample for any real message (a loop over a few thousand items), far short of a hang.
pub const FUEL: u64 = 200_000;

/// A template's sources, saved or not.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    pub subject: Option<&'a str>,
    pub body: &'a str,
    pub html: Option<&'a str>,
}

impl<'a> Sources<'a> {
    pub fn of(template: &'a crate::domain::Template) -> Self {
        Self { subject: template.subject.as_deref(), body: &template.body, html: template.html.as_deref() }
    }

    fn parts(&self) -> impl Iterator<Item = (Part, &'a str)> {
        [(Part::Subject, self.subject), (Part::Body, Some(self.body)), (Part::Html, self.html)]
            .into_iter()
            .filter_map(|(part, source)| source.map(|s| (part, s)))
    }
}

/// A part of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Subject,
    Body,
    Html,
}

impl Part {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Subject => "subject",
            Self::Body => "body",
            Self::Html => "html",
        }
    }
}

/// A rendered template.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rendered {
    pub subject: Option<String>,
    pub body: String,
    pub html: Option<String>,
}

/// Why a template cannot be saved or rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The source is not a valid template (`400 template_syntax`).
    #[error("syntax error in the {} at line {line}: {message}", part.as_str())]
    Syntax { part: Part, line: usize, message: String },
    /// The data lacks a variable the template uses, or the template misuses a value
    /// (`400 template_render`).
    #[error("{}", render_message(*part, variable.as_deref(), *line, message))]
    Render { part: Part, variable: Option<String>, line: Option<usize>, message: String },
    /// The render used up its fuel: a loop far too long for a message.
    #[error("the {} does too much work to render (over its budget of {FUEL} steps): a loop too long for a message?", part.as_str())]
    TooExpensive { part: Part },
}

fn render_message(part: Part, variable: Option<&str>, line: Option<usize>, message: &str) -> String {
    let at = line.map(|l| format!(" at line {l}")).unwrap_or_default();
    match variable {
        Some(v) => format!("the {} uses {v}{at}, which the data does not have", part.as_str()),
        None => format!("cannot render the {}{at}: {message}", part.as_str()),
    }
}

impl TemplateError {
    /// The error body's code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Syntax { .. } => "template_syntax",
            Self::Render { .. } | Self::TooExpensive { .. } => "template_render",
        }
    }
}

/// The engine every render uses: strict undefined, a fuel budget, HTML escaping in `html` only.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_auto_escape_callback(|name| if name == Part::Html.as_str() { AutoEscape::Html } else { AutoEscape::None });
    env
}

/// A line of minijinja's message without its own "(in name:line)" suffix.
fn detail(err: &minijinja::Error) -> String {
    err.detail().map(str::to_string).unwrap_or_else(|| err.kind().to_string())
}

/// Checks every part of a template and returns the variables it uses, sorted, with their paths
/// (`data.film`, `user.name`): what the admin page lists.
pub fn check(sources: &Sources<'_>) -> Result<Vec<String>, TemplateError> {
    let env = environment();
    let mut variables = BTreeSet::new();
    for (part, source) in sources.parts() {
        let template = env.template_from_named_str(part.as_str(), source).map_err(|e| TemplateError::Syntax {
            part,
            line: e.line().unwrap_or(1),
            message: detail(&e),
        })?;
        variables.extend(template.undeclared_variables(true));
    }
    Ok(variables.into_iter().collect())
}

/// Renders every part with `user` (the recipient's profile) and `data` (the event's data).
pub fn render(sources: &Sources<'_>, user: &serde_json::Value, data: &serde_json::Value) -> Result<Rendered, TemplateError> {
    let env = environment();
    let context = serde_json::json!({ "user": user, "data": data });
    let ctx = Value::from(minijinja::value::Serde(&context));
    let mut rendered = Rendered { subject: None, body: String::new(), html: None };
    for (part, source) in sources.parts() {
        let syntax = |e: minijinja::Error| TemplateError::Syntax { part, line: e.line().unwrap_or(1), message: detail(&e) };
        let template = env.template_from_named_str(part.as_str(), source).map_err(syntax)?;
        let text = template.render(ctx.clone()).map_err(|e| match e.kind() {
            ErrorKind::OutOfFuel => TemplateError::TooExpensive { part },
            ErrorKind::UndefinedError => TemplateError::Render {
                part,
                variable: missing_variable(template.undeclared_variables(true), &context),
                line: e.line(),
                message: detail(&e),
            },
            _ => TemplateError::Render { part, variable: None, line: e.line(), message: detail(&e) },
        })?;
        match part {
            Part::Subject => rendered.subject = Some(text),
            Part::Body => rendered.body = text,
            Part::Html => rendered.html = Some(text),
        }
    }
    Ok(rendered)
}

/// Of the variable paths a template uses, the first (in sorted order) the context lacks:
/// `data.film` when `data` has no `film`.
fn missing_variable(paths: impl IntoIterator<Item = String>, context: &serde_json::Value) -> Option<String> {
    let mut paths: Vec<String> = paths.into_iter().collect();
    paths.sort();
    paths.into_iter().find(|path| {
        let mut at = context;
        for segment in path.split('.') {
            match at.get(segment) {
                Some(next) => at = next,
                // A path through a value that is not a map (an item of a list, a string's
                // method) is not the one missing.
                None => return at.is_object(),
            }
        }
        false
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn src<'a>(subject: Option<&'a str>, body: &'a str, html: Option<&'a str>) -> Sources<'a> {
        Sources { subject, body, html }
    }

    #[test]
    fn renders_user_and_data() {
        let s = src(Some("Привет, {{ user.name }}"), "Новый фильм: {{ data.film }}", Some("<p>{{ data.film }}</p>"));
        let r = render(&s, &json!({"name": "Аня"}), &json!({"film": "Солярис"})).unwrap();
        assert_eq!(r.subject.as_deref(), Some("Привет, Аня"));
        assert_eq!(r.body, "Новый фильм: Солярис");
        assert_eq!(r.html.as_deref(), Some("<p>Солярис</p>"));
        let plain = render(&src(None, "{{ data.n + 1 }}", None), &json!({}), &json!({"n": 41})).unwrap();
        assert_eq!(plain, Rendered { subject: None, body: "42".into(), html: None });
    }

    #[test]
    fn html_is_escaped_in_the_html_part_only() {
        let s = src(Some("{{ data.x }}"), "{{ data.x }}", Some("<b>{{ data.x }}</b>"));
        let r = render(&s, &json!({}), &json!({"x": "<script>&"})).unwrap();
        assert_eq!(r.subject.as_deref(), Some("<script>&"));
        assert_eq!(r.body, "<script>&");
        assert_eq!(r.html.as_deref(), Some("<b>&lt;script&gt;&amp;</b>"));
    }

    #[test]
    fn a_missing_variable_is_a_render_error_naming_it() {
        let s = src(Some("Hi {{ user.name }}"), "line one\n{{ data.film }}", None);
        let err = render(&s, &json!({"name": "A"}), &json!({"other": 1})).unwrap_err();
        assert_eq!(err.code(), "template_render");
        assert!(matches!(&err, TemplateError::Render { part: Part::Body, variable: Some(v), .. } if v == "data.film"), "{err:?}");
        assert!(err.to_string().contains("data.film"), "{err}");
        // The whole of `data` or `user` missing, and strictness inside an `if` as well.
        let err = render(&src(None, "{{ user.email }}", None), &json!({}), &json!({})).unwrap_err();
        assert!(err.to_string().contains("user.email"), "{err}");
        let err = render(&src(None, "{% if data.flag %}x{% endif %}", None), &json!({}), &json!({})).unwrap_err();
        assert!(err.to_string().contains("data.flag"), "{err}");
        // `is defined` is how a template says a variable is optional.
        let ok = render(&src(None, "{% if data.flag is defined %}x{% else %}y{% endif %}", None), &json!({}), &json!({})).unwrap();
        assert_eq!(ok.body, "y");
    }

    #[test]
    fn a_syntax_error_names_the_part_and_line() {
        let err = check(&src(Some("ok"), "one\ntwo\n{{ data.film ", None)).unwrap_err();
        assert_eq!(err.code(), "template_syntax");
        assert!(matches!(err, TemplateError::Syntax { part: Part::Body, line: 3, .. }), "{err:?}");
        assert!(err.to_string().contains("line 3"), "{err}");
        let err = check(&src(None, "fine", Some("<p>\n{% for x in data.items %}"))).unwrap_err();
        assert!(matches!(err, TemplateError::Syntax { part: Part::Html, line: 2, .. }), "{err:?}");
        let err = check(&src(Some("{% endif %}"), "b", None)).unwrap_err();
        assert!(matches!(err, TemplateError::Syntax { part: Part::Subject, line: 1, .. }), "{err:?}");
    }

    #[test]
    fn variables_are_listed_with_their_paths() {
        let s = src(
            Some("{{ user.name }}"),
            "{{ data.film }} {% for a in data.actors %}{{ a.name }}{% endfor %} {{ data.film }}",
            Some("{{ user.name }} {{ data.when }}"),
        );
        assert_eq!(check(&s).unwrap(), ["data.actors", "data.film", "data.when", "user.name"]);
        assert!(check(&src(None, "static", None)).unwrap().is_empty());
    }

    #[test]
    fn a_huge_loop_runs_out_of_fuel() {
        let s = src(None, "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}", None);
        let started = std::time::Instant::now();
        let err = render(&s, &json!({}), &json!({})).unwrap_err();
        assert!(matches!(err, TemplateError::TooExpensive { part: Part::Body }), "{err:?}");
        assert_eq!(err.code(), "template_render");
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "took {:?}", started.elapsed());
        // Output growth is charged as well.
        let s = src(None, "{{ 'x' * 100000000 }}", None);
        assert!(matches!(render(&s, &json!({}), &json!({})).unwrap_err(), TemplateError::TooExpensive { .. }));
        // A loop of a real message's size is fine.
        let items: Vec<u32> = (0..1000).collect();
        assert!(render(&src(None, "{% for i in data.items %}{{ i }},{% endfor %}", None), &json!({}), &json!({"items": items})).is_ok());
    }
}
