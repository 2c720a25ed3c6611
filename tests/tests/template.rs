//! `infra/template.yaml` against the code it deploys: the WebSocket routes are exactly the ones
//! `herald-local` serves (`herald_local::functions::NOTIFY_ROUTES` / `CHAT_ROUTES`), each wired to a
//! function that API Gateway may invoke; the tables are exactly `herald::store::tables::TABLES`; every
//! function is a workspace crate built by cargo-lambda, gets the variables its `main.rs` reads and
//! the table variables of the tables its policy grants, and manages connections of its own API only;
//! the SQS event sources report batch item failures; and the LocalStack init hook
//! (`localstack/init/ready.d/10-herald-resources.sh`) is the one the table definitions generate.
//!
//! The template is parsed with its CloudFormation short-form tags (`!Ref`, `!Sub`, `!GetAtt`), which
//! `serde_norway` keeps as tagged values. Every check collects all drifts and fails with the list.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use herald::store::tables::{IndexDef, KeyAttr, TABLES, TableDef};
use herald_local::functions::LocalApi;
use serde_norway::{Mapping, Value};

/// The logical ids of the two WebSocket APIs.
const APIS: &[(LocalApi, &str)] = &[(LocalApi::Notify, "NotifyApi"), (LocalApi::Chat, "ChatApi")];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace").to_path_buf()
}

struct Template {
    doc: Value,
}

impl Template {
    fn load() -> Self {
        let path = root().join("infra/template.yaml");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let doc: Value = serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
        Self { doc }
    }

    fn resources(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.doc
            .get("Resources")
            .and_then(Value::as_mapping)
            .expect("the template has Resources")
            .iter()
            .map(|(k, v)| (k.as_str().expect("logical ids are strings"), v))
    }

    fn resource(&self, id: &str) -> Option<&Value> {
        self.doc.get("Resources").and_then(|r| r.get(id))
    }

    fn of_type<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (&'a str, &'a Value)> + 'a {
        self.resources().filter(move |(_, r)| r.get("Type").and_then(Value::as_str) == Some(kind))
    }
}

fn props(resource: &Value) -> &Value {
    resource.get("Properties").expect("a resource has Properties")
}

fn prop<'a>(resource: &'a Value, name: &str) -> Option<&'a Value> {
    props(resource).get(name)
}

fn prop_str<'a>(resource: &'a Value, name: &str) -> Option<&'a str> {
    prop(resource, name).and_then(Value::as_str)
}

/// The argument of an intrinsic function, in short form (`!Sub x`) or long form (`Fn::Sub: x`).
fn intrinsic<'a>(value: &'a Value, short: &str) -> Option<&'a Value> {
    match value {
        Value::Tagged(t) if t.tag == short => Some(&t.value),
        Value::Mapping(m) if m.len() == 1 => {
            let long = if short == "Ref" { "Ref".to_string() } else { format!("Fn::{short}") };
            m.get(long.as_str())
        }
        _ => None,
    }
}

/// `!Ref X` → `X`.
fn ref_of(value: &Value) -> Option<&str> {
    intrinsic(value, "Ref").and_then(Value::as_str)
}

/// `!Sub "text"` → `text` (the one-argument form).
fn sub_of(value: &Value) -> Option<&str> {
    intrinsic(value, "Sub").and_then(Value::as_str)
}

/// `!GetAtt X.Arn` / `Fn::GetAtt: [X, Arn]` → (`X`, `Arn`).
fn getatt_of(value: &Value) -> Option<(String, String)> {
    match intrinsic(value, "GetAtt")? {
        Value::String(s) => s.split_once('.').map(|(a, b)| (a.to_string(), b.to_string())),
        Value::Sequence(v) if v.len() == 2 => Some((v[0].as_str()?.to_string(), v[1].as_str()?.to_string())),
        _ => None,
    }
}

/// The `${Name}` / `${Name.Attr}` references of a `!Sub` text, by resource name.
fn sub_refs(text: &str) -> Vec<&str> {
    text.split("${").skip(1).filter_map(|rest| rest.split_once('}')).map(|(name, _)| name.split('.').next().unwrap_or(name)).collect()
}

/// Every resource a value names through `Ref`, `GetAtt` or `Sub`, anywhere inside it.
fn referenced(value: &Value, out: &mut BTreeSet<String>) {
    if let Some(r) = ref_of(value) {
        out.insert(r.to_string());
    }
    if let Some((r, _)) = getatt_of(value) {
        out.insert(r);
    }
    if let Some(s) = sub_of(value) {
        out.extend(sub_refs(s).into_iter().map(str::to_string));
    }
    match value {
        Value::Tagged(t) => referenced(&t.value, out),
        Value::Sequence(v) => v.iter().for_each(|v| referenced(v, out)),
        Value::Mapping(m) => m.values().for_each(|v| referenced(v, out)),
        _ => {}
    }
}

fn fail_if_any(what: &str, problems: Vec<String>) {
    assert!(problems.is_empty(), "infra/template.yaml has drifted from {what}:\n  - {}", problems.join("\n  - "));
}

/// The routes of one WebSocket API: route key → route resource.
fn routes_of<'a>(t: &'a Template, api_id: &str) -> (BTreeMap<&'a str, (&'a str, &'a Value)>, Vec<String>) {
    let mut routes = BTreeMap::new();
    let mut problems = Vec::new();
    for (id, r) in t.of_type("AWS::ApiGatewayV2::Route") {
        if prop(r, "ApiId").and_then(ref_of) != Some(api_id) {
            continue;
        }
        let key = prop_str(r, "RouteKey").unwrap_or_else(|| panic!("route {id} has no RouteKey"));
        if let Some((other, _)) = routes.insert(key, (id, r)) {
            problems.push(format!("{api_id}: route key {key} is declared twice ({other} and {id})"));
        }
    }
    (routes, problems)
}

fn check_api_routes(api: LocalApi, api_id: &str) {
    let t = Template::load();
    let mut problems = Vec::new();

    let resource = t.resource(api_id).unwrap_or_else(|| panic!("no resource {api_id}"));
    assert_eq!(resource.get("Type").and_then(Value::as_str), Some("AWS::ApiGatewayV2::Api"), "{api_id}");
    assert_eq!(prop_str(resource, "ProtocolType"), Some("WEBSOCKET"), "{api_id}");
    let selection = format!("$request.body.{}", api.selection_field());
    if prop_str(resource, "RouteSelectionExpression") != Some(selection.as_str()) {
        problems.push(format!(
            "{api_id}: RouteSelectionExpression is {:?}, herald-local selects on {selection}",
            prop_str(resource, "RouteSelectionExpression")
        ));
    }

    let (routes, dupes) = routes_of(&t, api_id);
    problems.extend(dupes);
    let in_template: BTreeSet<&str> = routes.keys().copied().collect();
    let served: BTreeSet<&str> = api.routes().iter().copied().collect();
    for missing in served.difference(&in_template) {
        problems.push(format!("{api_id}: herald-local serves route {missing}, the template has no such route"));
    }
    for extra in in_template.difference(&served) {
        problems.push(format!("{api_id}: the template routes {extra}, herald-local does not serve it"));
    }

    let route_responses: BTreeSet<&str> = t
        .of_type("AWS::ApiGatewayV2::RouteResponse")
        .filter(|(_, r)| prop(r, "ApiId").and_then(ref_of) == Some(api_id) && prop_str(r, "RouteResponseKey") == Some("$default"))
        .filter_map(|(_, r)| prop(r, "RouteId").and_then(ref_of))
        .collect();
    let permissions: Vec<&Value> = t.of_type("AWS::Lambda::Permission").map(|(_, r)| r).collect();

    for (key, (route_id, route)) in &routes {
        // The integration: a Lambda proxy on this API.
        let target = prop(route, "Target").and_then(sub_of).unwrap_or_default();
        let Some(integration_id) = target.strip_prefix("integrations/${").and_then(|s| s.strip_suffix('}')) else {
            problems.push(format!("{route_id}: Target {target:?} is not !Sub \"integrations/${{Integration}}\""));
            continue;
        };
        let Some(integration) = t.resource(integration_id) else {
            problems.push(format!("{route_id}: no integration {integration_id}"));
            continue;
        };
        if prop(integration, "ApiId").and_then(ref_of) != Some(api_id) || prop_str(integration, "IntegrationType") != Some("AWS_PROXY") {
            problems.push(format!("{integration_id}: not an AWS_PROXY integration of {api_id}"));
        }
        let uri = prop(integration, "IntegrationUri").and_then(sub_of).unwrap_or_default();
        let function = sub_refs(uri).into_iter().find(|r| t.resource(r).is_some());
        let Some(function) =
            function.filter(|f| t.resource(f).and_then(|r| r.get("Type")).and_then(Value::as_str) == Some("AWS::Serverless::Function"))
        else {
            problems.push(format!("{integration_id}: IntegrationUri {uri:?} names no function of the template"));
            continue;
        };

        // API Gateway may invoke it on this route.
        let source = format!("${{{api_id}}}/${{StageName}}/{key}");
        let allowed = permissions.iter().any(|p| {
            prop(p, "FunctionName").and_then(ref_of) == Some(function)
                && prop_str(p, "Principal") == Some("apigateway.amazonaws.com")
                && prop(p, "SourceArn").and_then(sub_of).is_some_and(|arn| arn.ends_with(&source))
        });
        if !allowed {
            problems.push(format!("{route_id}: no Lambda permission lets {api_id}/{key} invoke {function}"));
        }

        // $connect goes through the REQUEST authorizer; the others reply through a route response.
        if *key == "$connect" {
            let authorizer = prop(route, "AuthorizerId").and_then(ref_of).and_then(|a| t.resource(a));
            let ok = prop_str(route, "AuthorizationType") == Some("CUSTOM")
                && authorizer
                    .is_some_and(|a| prop_str(a, "AuthorizerType") == Some("REQUEST") && prop(a, "ApiId").and_then(ref_of) == Some(api_id));
            if !ok {
                problems.push(format!("{route_id}: $connect must use a REQUEST authorizer of {api_id}"));
            }
        } else if *key != "$disconnect"
            && (prop_str(route, "RouteResponseSelectionExpression") != Some("$default") || !route_responses.contains(route_id))
        {
            problems.push(format!(
                "{route_id}: {key} replies, so it needs RouteResponseSelectionExpression $default and a $default RouteResponse"
            ));
        }
    }

    // A stage that waits for every route.
    let stage = t.of_type("AWS::ApiGatewayV2::Stage").find(|(_, s)| prop(s, "ApiId").and_then(ref_of) == Some(api_id));
    match stage {
        None => problems.push(format!("{api_id} has no stage")),
        Some((stage_id, s)) => {
            let depends: BTreeSet<&str> =
                s.get("DependsOn").and_then(Value::as_sequence).into_iter().flatten().filter_map(Value::as_str).collect();
            for (route_id, _) in routes.values() {
                if !depends.contains(route_id) {
                    problems.push(format!("{stage_id} does not depend on {route_id} (its first deployment could miss it)"));
                }
            }
        }
    }

    fail_if_any(&format!("herald-local's {} routes", api.api_id()), problems);
}

#[test]
fn notify_routes_are_the_ones_herald_local_serves() {
    check_api_routes(LocalApi::Notify, "NotifyApi");
}

#[test]
fn chat_routes_are_the_ones_herald_local_serves() {
    check_api_routes(LocalApi::Chat, "ChatApi");
}

#[test]
fn there_are_exactly_two_websocket_apis() {
    let t = Template::load();
    let found: BTreeSet<&str> =
        t.of_type("AWS::ApiGatewayV2::Api").filter(|(_, r)| prop_str(r, "ProtocolType") == Some("WEBSOCKET")).map(|(id, _)| id).collect();
    let expected: BTreeSet<&str> = APIS.iter().map(|(_, id)| *id).collect();
    assert_eq!(found, expected, "the WebSocket APIs of infra/template.yaml");
}

/// `[(name, HASH), (name, RANGE)]` of a key schema in the template.
fn key_schema(value: Option<&Value>) -> Vec<(String, String)> {
    value
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .map(|k| {
            let name = k.get("AttributeName").and_then(Value::as_str).unwrap_or("?");
            let kind = k.get("KeyType").and_then(Value::as_str).unwrap_or("?");
            (name.to_string(), kind.to_string())
        })
        .collect()
}

fn expected_keys(hash: KeyAttr, range: Option<KeyAttr>) -> Vec<(String, String)> {
    std::iter::once((hash.name.to_string(), "HASH".to_string())).chain(range.map(|r| (r.name.to_string(), "RANGE".to_string()))).collect()
}

fn check_table(def: &TableDef, table: &Value, problems: &mut Vec<String>) {
    let id = def.logical_id;
    let p = props(table);
    let name = format!("${{NamePrefix}}{}", def.suffix);
    if p.get("TableName").and_then(sub_of) != Some(name.as_str()) {
        problems.push(format!("{id}: TableName should be !Sub \"{name}\", found {:?}", p.get("TableName")));
    }
    if p.get("BillingMode").and_then(Value::as_str) != Some("PAY_PER_REQUEST") {
        problems.push(format!("{id}: BillingMode should be PAY_PER_REQUEST"));
    }
    let pitr = p.get("PointInTimeRecoverySpecification").and_then(|s| s.get("PointInTimeRecoveryEnabled")).and_then(Value::as_bool);
    if pitr != Some(true) {
        problems.push(format!("{id}: point-in-time recovery is not enabled"));
    }

    let keys = key_schema(p.get("KeySchema"));
    if keys != expected_keys(def.hash, def.range) {
        problems.push(format!("{id}: KeySchema is {keys:?}, tables.rs says {:?}", expected_keys(def.hash, def.range)));
    }

    // Attribute definitions: exactly the key attributes of the table and its indexes, with their types.
    let mut expected_attrs: BTreeMap<String, String> = BTreeMap::new();
    let all_keys = std::iter::once(def.hash)
        .chain(def.range)
        .chain(def.indexes.iter().flat_map(|i: &IndexDef| std::iter::once(i.hash).chain(i.range)));
    for k in all_keys {
        expected_attrs.insert(k.name.to_string(), k.kind.as_str().to_string());
    }
    let mut attrs: BTreeMap<String, String> = BTreeMap::new();
    for a in p.get("AttributeDefinitions").and_then(Value::as_sequence).into_iter().flatten() {
        let name = a.get("AttributeName").and_then(Value::as_str).unwrap_or("?").to_string();
        let kind = a.get("AttributeType").and_then(Value::as_str).unwrap_or("?").to_string();
        if attrs.insert(name.clone(), kind).is_some() {
            problems.push(format!("{id}: attribute {name} is defined twice"));
        }
    }
    if attrs != expected_attrs {
        problems.push(format!("{id}: AttributeDefinitions are {attrs:?}, tables.rs says {expected_attrs:?}"));
    }

    // Global secondary indexes: names, keys, projection; no local ones.
    let mut indexes: BTreeMap<String, (Vec<(String, String)>, String)> = BTreeMap::new();
    for i in p.get("GlobalSecondaryIndexes").and_then(Value::as_sequence).into_iter().flatten() {
        let name = i.get("IndexName").and_then(Value::as_str).unwrap_or("?").to_string();
        let projection = i.get("Projection").and_then(|p| p.get("ProjectionType")).and_then(Value::as_str).unwrap_or("?").to_string();
        indexes.insert(name, (key_schema(i.get("KeySchema")), projection));
    }
    let expected_indexes: BTreeMap<String, (Vec<(String, String)>, String)> =
        def.indexes.iter().map(|i| (i.name.to_string(), (expected_keys(i.hash, i.range), i.projection.as_str().to_string()))).collect();
    if indexes != expected_indexes {
        problems.push(format!("{id}: GlobalSecondaryIndexes are {indexes:?}, tables.rs says {expected_indexes:?}"));
    }
    if p.get("LocalSecondaryIndexes").is_some() {
        problems.push(format!("{id}: has LocalSecondaryIndexes, tables.rs has none"));
    }

    // TTL.
    let ttl = p.get("TimeToLiveSpecification");
    let ttl_attr = ttl.and_then(|s| s.get("AttributeName")).and_then(Value::as_str);
    let ttl_on = ttl.and_then(|s| s.get("Enabled")).and_then(Value::as_bool) == Some(true);
    match def.ttl {
        Some(attr) if ttl_attr != Some(attr) || !ttl_on => problems.push(format!("{id}: TTL should be enabled on {attr}, found {ttl:?}")),
        None if ttl.is_some() => problems.push(format!("{id}: has a TTL, tables.rs has none")),
        _ => {}
    }
}

#[test]
fn tables_are_exactly_the_shared_definitions() {
    let t = Template::load();
    let mut problems = Vec::new();
    let in_template: BTreeMap<&str, &Value> = t.of_type("AWS::DynamoDB::Table").collect();
    for def in TABLES {
        match in_template.get(def.logical_id) {
            None => problems.push(format!("tables.rs defines {} ({}), the template has no such table", def.logical_id, def.suffix)),
            Some(table) => check_table(def, table, &mut problems),
        }
    }
    for id in in_template.keys() {
        if !TABLES.iter().any(|d| d.logical_id == *id) {
            problems.push(format!("the template has table {id}, tables.rs does not define it"));
        }
    }
    fail_if_any("shared/src/store/tables.rs", problems);
}

/// The workspace's function crates: package name → directory.
fn function_crates() -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(root().join("functions")).expect("functions/ exists") {
        let dir = entry.expect("readable functions/").path();
        let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else { continue };
        let name = manifest
            .lines()
            .skip_while(|l| l.trim() != "[package]")
            .find_map(|l| {
                l.trim().strip_prefix("name").map(|rest| rest.trim_start_matches([' ', '=']).trim().trim_matches('"').to_string())
            })
            .unwrap_or_else(|| panic!("{} has no package name", dir.display()));
        out.insert(name, dir);
    }
    out
}

#[test]
fn every_function_is_a_workspace_crate_built_by_cargo_lambda() {
    let t = Template::load();
    let mut problems = Vec::new();
    let crates = function_crates();
    let template_dir = root().join("infra");
    let mut binaries = BTreeSet::new();
    for (id, f) in t.of_type("AWS::Serverless::Function") {
        let meta = f.get("Metadata");
        if meta.and_then(|m| m.get("BuildMethod")).and_then(Value::as_str) != Some("rust-cargolambda") {
            problems.push(format!("{id}: Metadata.BuildMethod is not rust-cargolambda"));
        }
        let Some(binary) = meta.and_then(|m| m.get("BuildProperties")).and_then(|b| b.get("Binary")).and_then(Value::as_str) else {
            problems.push(format!("{id}: no Metadata.BuildProperties.Binary"));
            continue;
        };
        binaries.insert(binary.to_string());
        let code_uri = prop_str(f, "CodeUri").unwrap_or_default();
        let dir = template_dir.join(code_uri);
        match crates.get(binary) {
            Some(crate_dir) if crate_dir.canonicalize().ok() != dir.canonicalize().ok() => {
                problems.push(format!("{id}: CodeUri {code_uri} is not the directory of {binary} ({})", crate_dir.display()))
            }
            Some(_) => {}
            None => problems.push(format!("{id}: builds {binary}, which is not a crate under functions/ (yet?)")),
        }
        for (key, expected) in [("Runtime", "provided.al2023"), ("Handler", "bootstrap")] {
            let value = prop_str(f, key)
                .or_else(|| t.doc.get("Globals").and_then(|g| g.get("Function")).and_then(|g| g.get(key)).and_then(Value::as_str));
            if value != Some(expected) {
                problems.push(format!("{id}: {key} should be {expected}"));
            }
        }
    }
    for name in crates.keys() {
        if !binaries.contains(name) {
            problems.push(format!("functions/ has the crate {name}, no function of the template builds it"));
        }
    }
    fail_if_any("the function crates", problems);
}

/// The tables a function's policy grants access to.
fn policy_tables(t: &Template, function: &Value) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    if let Some(policies) = prop(function, "Policies") {
        referenced(policies, &mut named);
    }
    named
        .into_iter()
        .filter(|r| t.resource(r).and_then(|x| x.get("Type")).and_then(Value::as_str) == Some("AWS::DynamoDB::Table"))
        .collect()
}

#[test]
fn functions_get_the_table_variables_of_the_tables_they_may_use() {
    let t = Template::load();
    let mut problems = Vec::new();
    for (id, f) in t.of_type("AWS::Serverless::Function") {
        let vars: Mapping =
            prop(f, "Environment").and_then(|e| e.get("Variables")).and_then(Value::as_mapping).cloned().unwrap_or_default();
        for def in TABLES {
            let var = vars.get(def.env_var);
            if let Some(v) = var
                && ref_of(v) != Some(def.logical_id)
            {
                problems.push(format!("{id}: {} should be !Ref {}, found {v:?}", def.env_var, def.logical_id));
            }
        }
        for table in policy_tables(&t, f) {
            let def = TABLES.iter().find(|d| d.logical_id == table).expect("every table of the template is in tables.rs (checked above)");
            if vars.get(def.env_var).is_none() {
                problems.push(format!("{id}: its policy grants {table}, but it does not get {}", def.env_var));
            }
        }
    }
    // The prefix every function falls back to is the one the tables are named with.
    let global = t.doc.get("Globals").and_then(|g| g.get("Function")).and_then(|g| g.get("Environment")).and_then(|e| e.get("Variables"));
    if global.and_then(|v| v.get("HERALD_TABLE_PREFIX")).and_then(ref_of) != Some("NamePrefix") {
        problems.push("Globals: HERALD_TABLE_PREFIX should be !Ref NamePrefix".into());
    }
    fail_if_any("the tables' environment variables", problems);
}

#[test]
fn functions_manage_connections_of_their_own_api_only() {
    let t = Template::load();
    let mut problems = Vec::new();
    for (id, f) in t.of_type("AWS::Serverless::Function") {
        let endpoint = prop(f, "Environment").and_then(|e| e.get("Variables")).and_then(|v| v.get("HERALD_MANAGEMENT_ENDPOINT"));
        let endpoint_api = endpoint.and_then(sub_of).map(sub_refs).and_then(|r| r.into_iter().find(|x| APIS.iter().any(|(_, a)| a == x)));
        // Every execute-api:ManageConnections statement of the function.
        let mut granted = BTreeSet::new();
        for policy in prop(f, "Policies").and_then(Value::as_sequence).into_iter().flatten() {
            for statement in policy.get("Statement").and_then(Value::as_sequence).into_iter().flatten() {
                let actions: Vec<&str> =
                    statement.get("Action").and_then(Value::as_sequence).into_iter().flatten().filter_map(Value::as_str).collect();
                if !actions.iter().any(|a| a.starts_with("execute-api:")) {
                    continue;
                }
                if actions != ["execute-api:ManageConnections"] {
                    problems.push(format!("{id}: execute-api actions {actions:?}, only ManageConnections is expected"));
                }
                let mut apis = BTreeSet::new();
                referenced(statement.get("Resource").unwrap_or(&Value::Null), &mut apis);
                for resource in statement.get("Resource").and_then(Value::as_sequence).into_iter().flatten() {
                    if !sub_of(resource).is_some_and(|s| s.contains("/@connections/")) {
                        problems.push(format!("{id}: ManageConnections on {resource:?}, not on @connections"));
                    }
                }
                granted.extend(apis.into_iter().filter(|a| APIS.iter().any(|(_, x)| x == a)));
            }
        }
        match (endpoint_api, granted.len()) {
            (None, 0) => {}
            (Some(api), 1) if granted.contains(api) => {}
            _ => problems.push(format!("{id}: manages connections of {granted:?} with HERALD_MANAGEMENT_ENDPOINT of {endpoint_api:?}")),
        }
    }
    fail_if_any("the management API permissions", problems);
}

#[test]
fn sqs_event_sources_report_batch_item_failures_and_queues_have_dead_letters() {
    let t = Template::load();
    let mut problems = Vec::new();
    let mut consumed = BTreeSet::new();
    for (id, m) in t.of_type("AWS::Lambda::EventSourceMapping") {
        let Some((queue, _)) = prop(m, "EventSourceArn").and_then(getatt_of) else { continue };
        if t.resource(&queue).and_then(|q| q.get("Type")).and_then(Value::as_str) != Some("AWS::SQS::Queue") {
            continue;
        }
        let types: Vec<&str> =
            prop(m, "FunctionResponseTypes").and_then(Value::as_sequence).into_iter().flatten().filter_map(Value::as_str).collect();
        if types != ["ReportBatchItemFailures"] {
            problems.push(format!("{id}: FunctionResponseTypes should be [ReportBatchItemFailures], found {types:?}"));
        }
        consumed.insert(queue);
    }
    for queue in ["NotificationsQueue", "RedeliveryQueue", "PlatformQueue"] {
        if !consumed.contains(queue) {
            problems.push(format!("no event source mapping consumes {queue}"));
        }
        let redrive = t.resource(queue).and_then(|q| prop(q, "RedrivePolicy"));
        let dlq = redrive.and_then(|r| r.get("deadLetterTargetArn")).and_then(getatt_of);
        let max = redrive.and_then(|r| r.get("maxReceiveCount")).and_then(Value::as_u64);
        if dlq.is_none() || max != Some(5) {
            problems.push(format!("{queue}: needs a RedrivePolicy to its dead-letter queue with maxReceiveCount 5"));
        }
    }
    fail_if_any("the queues", problems);
}

/// Every statement of a function's inline policies (the `!If` ones' true branch included).
fn statements(function: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    fn walk<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
        match v {
            Value::Mapping(m) => {
                if let Some(Value::Sequence(s)) = m.get("Statement") {
                    out.extend(s.iter());
                } else {
                    m.values().for_each(|x| walk(x, out));
                }
            }
            Value::Sequence(s) => s.iter().for_each(|x| walk(x, out)),
            Value::Tagged(t) => walk(&t.value, out),
            _ => {}
        }
    }
    if let Some(p) = prop(function, "Policies") {
        walk(p, &mut out);
    }
    out
}

fn actions(statement: &Value) -> Vec<String> {
    match statement.get("Action") {
        Some(Value::Sequence(s)) => s.iter().filter_map(Value::as_str).map(String::from).collect(),
        Some(Value::String(a)) => vec![a.clone()],
        _ => Vec::new(),
    }
}

#[test]
fn scheduling_is_confined_to_the_platform_group_queue_and_role() {
    let t = Template::load();
    let mut problems = Vec::new();
    // The role Scheduler assumes: trusted by scheduler.amazonaws.com of this account, allowed to
    // send to the platform queue and nothing else.
    let role = t.resource("PlatformSchedulerRole").expect("PlatformSchedulerRole");
    let trust = prop(role, "AssumeRolePolicyDocument").map(|d| format!("{d:?}")).unwrap_or_default();
    if !trust.contains("scheduler.amazonaws.com") || !trust.contains("aws:SourceAccount") {
        problems.push(format!("PlatformSchedulerRole: trust scheduler.amazonaws.com with aws:SourceAccount, found {trust}"));
    }
    let mut granted = Vec::new();
    for policy in prop(role, "Policies").and_then(Value::as_sequence).into_iter().flatten() {
        for s in policy.get("PolicyDocument").and_then(|d| d.get("Statement")).and_then(Value::as_sequence).into_iter().flatten() {
            granted.push((actions(s), s.get("Resource").and_then(getatt_of)));
        }
    }
    if granted != [(vec!["sqs:SendMessage".to_string()], Some(("PlatformQueue".to_string(), "Arn".to_string())))] {
        problems.push(format!("PlatformSchedulerRole may only sqs:SendMessage to PlatformQueue, found {granted:?}"));
    }
    if t.resource("PlatformScheduleGroup").and_then(|g| g.get("Type")).and_then(Value::as_str) != Some("AWS::Scheduler::ScheduleGroup") {
        problems.push("no PlatformScheduleGroup schedule group".into());
    }
    // Who schedules: the functions that build the EventBridge scheduler, each limited to the group's
    // schedules and to passing that role to Scheduler.
    let crates = function_crates();
    let mut schedulers = BTreeSet::new();
    for (id, f) in t.of_type("AWS::Serverless::Function") {
        let binary = f.get("Metadata").and_then(|m| m.get("BuildProperties")).and_then(|b| b.get("Binary")).and_then(Value::as_str);
        let main_rs =
            binary.and_then(|b| crates.get(b)).and_then(|d| std::fs::read_to_string(d.join("src/main.rs")).ok()).unwrap_or_default();
        let schedules = main_rs.contains("EventBridgeScheduler::from_lookup");
        for s in statements(f) {
            let acts = actions(s);
            let resource = s.get("Resource").map(|r| format!("{r:?}")).unwrap_or_default();
            if acts.iter().any(|a| a.starts_with("scheduler:")) {
                if !schedules {
                    problems.push(format!("{id}: may manage schedules but does not schedule"));
                }
                if !resource.contains("schedule/${PlatformScheduleGroup}/*") {
                    problems.push(format!("{id}: scheduler actions beyond the platform group's schedules: {resource}"));
                }
            }
            if acts.iter().any(|a| a == "iam:PassRole") {
                if s.get("Resource").and_then(getatt_of) != Some(("PlatformSchedulerRole".into(), "Arn".into())) {
                    problems.push(format!("{id}: iam:PassRole beyond PlatformSchedulerRole: {resource}"));
                }
                let condition = s.get("Condition").map(|c| format!("{c:?}")).unwrap_or_default();
                if !condition.contains("scheduler.amazonaws.com") {
                    problems.push(format!("{id}: iam:PassRole not limited to scheduler.amazonaws.com"));
                }
            }
            if acts.iter().any(|a| a == "scheduler:CreateSchedule") {
                schedulers.insert(id.to_string());
            }
        }
        if schedules && !schedulers.contains(id) {
            problems.push(format!("{id}: schedules but may not scheduler:CreateSchedule"));
        }
    }
    for id in ["PlatformAdminFunction", "PlatformEventsFunction", "PlatformWorkerFunction"] {
        if !schedulers.contains(id) {
            problems.push(format!("{id}: should schedule (send_at, recurrences, releases)"));
        }
    }
    fail_if_any("the scheduling permissions", problems);
}

// -------------------------------------------------------------------------------------------------
// localstack/init/ready.d/10-herald-resources.sh: generated from the same table definitions.
// -------------------------------------------------------------------------------------------------

const LOCALSTACK_INIT: &str = "localstack/init/ready.d/10-herald-resources.sh";

fn json_keys(hash: KeyAttr, range: Option<KeyAttr>) -> String {
    expected_keys(hash, range)
        .iter()
        .map(|(name, kind)| format!(r#"{{"AttributeName":"{name}","KeyType":"{kind}"}}"#))
        .collect::<Vec<_>>()
        .join(",")
}

/// The init hook that creates every table of `TABLES` and the queues with `awslocal`.
fn render_localstack_init() -> String {
    let mut out = String::from(
        r#"#!/usr/bin/env bash
# GENERATED from shared/src/store/tables.rs by tests/tests/template.rs: do not edit. Regenerate with
#   HERALD_BLESS=1 cargo nextest run -p herald-tests --test template
# LocalStack runs it once it is ready: it creates Herald's tables and queues with awslocal, named as
# herald-local --backend aws and infra/template.yaml name them (prefix HERALD_TABLE_PREFIX, default herald-).
set -euo pipefail
PREFIX="${HERALD_TABLE_PREFIX:-herald-}"

create_table() { # name, then the create-table arguments
  local name="$1"; shift
  if awslocal dynamodb describe-table --table-name "$name" >/dev/null 2>&1; then
    echo "herald: table $name exists"; return 0
  fi
  awslocal dynamodb create-table --table-name "$name" --billing-mode PAY_PER_REQUEST "$@" >/dev/null
  awslocal dynamodb wait table-exists --table-name "$name"
  echo "herald: created table $name"
}

enable_ttl() { # table attribute
  awslocal dynamodb update-time-to-live --table-name "$1" \
    --time-to-live-specification "Enabled=true,AttributeName=$2" >/dev/null
}

create_queue_with_dlq() { # name visibility-timeout retention
  local dlq_url dlq_arn
  dlq_url=$(awslocal sqs create-queue --queue-name "$1-dlq" --attributes MessageRetentionPeriod=1209600 --query QueueUrl --output text)
  dlq_arn=$(awslocal sqs get-queue-attributes --queue-url "$dlq_url" --attribute-names QueueArn --query Attributes.QueueArn --output text)
  awslocal sqs create-queue --queue-name "$1" --attributes "{\"VisibilityTimeout\":\"$2\",\"MessageRetentionPeriod\":\"$3\",\"RedrivePolicy\":\"{\\\"deadLetterTargetArn\\\":\\\"$dlq_arn\\\",\\\"maxReceiveCount\\\":\\\"5\\\"}\"}" >/dev/null
  echo "herald: created queue $1 and $1-dlq"
}
"#,
    );
    for def in TABLES {
        let mut attrs: Vec<KeyAttr> = Vec::new();
        for k in std::iter::once(def.hash).chain(def.range).chain(def.indexes.iter().flat_map(|i| std::iter::once(i.hash).chain(i.range))) {
            if !attrs.iter().any(|a| a.name == k.name) {
                attrs.push(k);
            }
        }
        let attrs =
            attrs.iter().map(|a| format!("AttributeName={},AttributeType={}", a.name, a.kind.as_str())).collect::<Vec<_>>().join(" ");
        let keys =
            expected_keys(def.hash, def.range).iter().map(|(n, k)| format!("AttributeName={n},KeyType={k}")).collect::<Vec<_>>().join(" ");
        out.push_str(&format!("\n# {} ({})\n", def.suffix, def.logical_id));
        out.push_str(&format!(
            "create_table \"${{PREFIX}}{}\" \\\n  --attribute-definitions {attrs} \\\n  --key-schema {keys}",
            def.suffix
        ));
        if !def.indexes.is_empty() {
            let indexes = def
                .indexes
                .iter()
                .map(|i| {
                    format!(
                        r#"{{"IndexName":"{}","KeySchema":[{}],"Projection":{{"ProjectionType":"{}"}}}}"#,
                        i.name,
                        json_keys(i.hash, i.range),
                        i.projection.as_str()
                    )
                })
                .collect::<Vec<_>>()
                .join(",");
            out.push_str(&format!(" \\\n  --global-secondary-indexes '[{indexes}]'"));
        }
        out.push('\n');
        if let Some(ttl) = def.ttl {
            out.push_str(&format!("enable_ttl \"${{PREFIX}}{}\" {ttl}\n", def.suffix));
        }
    }
    out.push_str(
        r#"
# Queues (infra/template.yaml: NotificationsQueue, FanoutQueue, RedeliveryQueue, PlatformQueue and their dead-letter queues).
create_queue_with_dlq "${PREFIX}notifications" 360 345600
create_queue_with_dlq "${PREFIX}fanout" 180 86400
create_queue_with_dlq "${PREFIX}redelivery" 180 86400
create_queue_with_dlq "${PREFIX}platform" 720 345600
echo "herald: LocalStack resources ready"
"#,
    );
    out
}

#[test]
fn localstack_init_hook_is_generated_from_the_shared_definitions() {
    let path = root().join(LOCALSTACK_INIT);
    let expected = render_localstack_init();
    if std::env::var_os("HERALD_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("create the hook's directory");
        std::fs::write(&path, &expected).expect("write the hook");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("make the hook executable");
        }
    }
    let found = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        found == expected,
        "{LOCALSTACK_INIT} is not what shared/src/store/tables.rs gives: regenerate it with \
         `HERALD_BLESS=1 cargo nextest run -p herald-tests --test template`"
    );
}

/// The variables a function's `main.rs` requires, from the start-up helpers it calls and the
/// `"HERALD_…"` names it reads itself.
fn required_vars(main_rs: &str) -> BTreeSet<String> {
    let mut vars = BTreeSet::new();
    let helpers: &[(&str, &[&str])] = &[
        ("management_gateway(", &["HERALD_MANAGEMENT_ENDPOINT"]),
        ("redelivery_timer(", &["HERALD_REDELIVERY_QUEUE_URL"]),
        (
            "EventBridgeScheduler::from_lookup",
            &["HERALD_PLATFORM_QUEUE_URL", "HERALD_PLATFORM_QUEUE_ARN", "HERALD_SCHEDULE_GROUP", "HERALD_SCHEDULER_ROLE_ARN"],
        ),
        (
            "AuthConfig::from_lookup",
            // The HS256 secret is read from Secrets Manager at run time (HERALD_JWT_SECRET_ARN),
            // never put in the environment: see the_jwt_secret_never_passes_through_the_environment.
            &[
                "HERALD_JWT_SECRET_ARN",
                "HERALD_JWT_PUBLIC_KEY",
                "HERALD_JWKS_URL",
                "HERALD_JWT_ALGORITHM",
                "HERALD_AUTH_VERIFY_URL",
                "HERALD_JWT_ISSUER",
                "HERALD_JWT_AUDIENCE",
            ],
        ),
    ];
    for (call, needs) in helpers {
        if main_rs.contains(call) {
            vars.extend(needs.iter().map(|v| v.to_string()));
        }
    }
    for (i, _) in main_rs.match_indices("\"HERALD_") {
        let name: String = main_rs[i + 1..].chars().take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_').collect();
        vars.insert(name);
    }
    vars
}

#[test]
fn functions_get_the_variables_their_code_reads() {
    let t = Template::load();
    let mut problems = Vec::new();
    let crates = function_crates();
    // Variables that only make sense for a function whose code reads them.
    let exclusive = [
        "HERALD_MANAGEMENT_ENDPOINT",
        "HERALD_REDELIVERY_QUEUE_URL",
        "HERALD_QUEUE_URL",
        "HERALD_DEAD_LETTER_QUEUE_URL",
        "HERALD_JWT_SECRET",
    ];
    for (id, f) in t.of_type("AWS::Serverless::Function") {
        let Some(binary) = f.get("Metadata").and_then(|m| m.get("BuildProperties")).and_then(|b| b.get("Binary")).and_then(Value::as_str)
        else {
            continue;
        };
        let Some(dir) = crates.get(binary) else { continue };
        let main_rs = std::fs::read_to_string(dir.join("src/main.rs")).unwrap_or_default();
        let needed = required_vars(&main_rs);
        let vars: Mapping =
            prop(f, "Environment").and_then(|e| e.get("Variables")).and_then(Value::as_mapping).cloned().unwrap_or_default();
        for var in &needed {
            if vars.get(var.as_str()).is_none() {
                problems.push(format!("{id}: {binary} reads {var}, the template does not set it"));
            }
        }
        for var in exclusive {
            if vars.get(var).is_some() && !needed.contains(var) {
                problems.push(format!("{id}: the template sets {var}, {binary}'s main.rs does not read it"));
            }
        }
    }
    fail_if_any("the variables the functions read", problems);
}

#[test]
fn the_jwt_secret_never_passes_through_the_environment() {
    let t = Template::load();
    let mut problems = Vec::new();
    for (id, function) in t.of_type("AWS::Serverless::Function") {
        let vars = prop(function, "Environment").and_then(|e| e.get("Variables"));
        if vars.and_then(|v| v.get("HERALD_JWT_SECRET")).is_some() {
            problems.push(format!("{id} sets HERALD_JWT_SECRET: give HERALD_JWT_SECRET_ARN and GetSecretValue instead"));
        }
        let reads_arn = vars.and_then(|v| v.get("HERALD_JWT_SECRET_ARN")).is_some();
        let policies = serde_norway::to_string(prop(function, "Policies").unwrap_or(&Value::Null)).unwrap_or_default();
        if reads_arn && !policies.contains("secretsmanager:GetSecretValue") {
            problems.push(format!("{id} reads HERALD_JWT_SECRET_ARN without secretsmanager:GetSecretValue"));
        }
    }
    fail_if_any("the secrets rule (issue 9)", problems);
}

#[test]
fn the_dashboard_shows_every_metric_the_functions_print() {
    let t = Template::load();
    let dashboard = t.resource("OperationsDashboard").expect("an OperationsDashboard");
    let sub = intrinsic(prop(dashboard, "DashboardBody").expect("a DashboardBody"), "Sub").expect("DashboardBody is a !Sub");
    let body = sub.as_sequence().and_then(|s| s.first()).and_then(Value::as_str).expect("!Sub [body, vars]");
    // What CloudFormation substitutes, with stand-ins: the body must then be the JSON CloudWatch takes.
    let mut text = body.replace("${Ns}", "Herald/stack").replace("${AWS::Region}", "eu-west-1");
    while let Some(start) = text.find("${") {
        let end = start + text[start..].find('}').expect("a closed ${...}");
        text.replace_range(start..=end, "queue-name");
    }
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("the dashboard body is not JSON: {e}\n{text}"));
    let shown: BTreeSet<String> = json["widgets"]
        .as_array()
        .expect("widgets")
        .iter()
        .flat_map(|w| w["properties"]["metrics"].as_array().cloned().unwrap_or_default())
        .filter(|m| m[0] == "Herald/stack")
        .map(|m| m[1].as_str().expect("a metric name").to_string())
        .collect();
    let printed: BTreeSet<String> = herald::metrics::emf_names().map(str::to_string).collect();
    assert_eq!(shown, printed, "the dashboard's Herald metrics are exactly the ones shared/src/metrics.rs prints");
    let env = t.doc["Globals"]["Function"]["Environment"]["Variables"].get("HERALD_METRICS_NAMESPACE");
    assert!(env.is_some(), "the functions are told their metrics namespace");
}

/// Whatever fails where nobody watches pages someone: every function has an alarm on its
/// `Errors`, and every dead-letter queue one on the messages it holds, both to the alarm topic.
#[test]
fn every_function_and_dead_letter_queue_has_an_alarm() {
    let t = Template::load();
    let mut watched: BTreeSet<(String, String)> = BTreeSet::new();
    for (_, alarm) in t.of_type("AWS::CloudWatch::Alarm") {
        let actions = prop(alarm, "AlarmActions").and_then(Value::as_sequence).into_iter().flatten();
        if !actions.filter_map(ref_of).any(|a| a == "AlarmTopic") {
            continue;
        }
        // The alarm's metric, or each metric of its math (`Metrics[].MetricStat.Metric`).
        let props = alarm.get("Properties");
        let math = prop(alarm, "Metrics").and_then(Value::as_sequence).into_iter().flatten();
        let metrics = props.into_iter().chain(math.filter_map(|m| m.get("MetricStat").and_then(|s| s.get("Metric"))));
        for m in metrics {
            let name = m.get("MetricName").and_then(Value::as_str).unwrap_or_default();
            for d in m.get("Dimensions").and_then(Value::as_sequence).into_iter().flatten() {
                let value = d.get("Value");
                let target = value.and_then(ref_of).map(String::from).or_else(|| value.and_then(getatt_of).map(|(r, _)| r));
                if let Some(target) = target {
                    watched.insert((name.to_string(), target));
                }
            }
        }
    }
    let mut problems = Vec::new();
    for (id, _) in t.of_type("AWS::Serverless::Function") {
        if !watched.contains(&("Errors".to_string(), id.to_string())) {
            problems.push(format!("{id}: no alarm on its Errors"));
        }
    }
    let dead_letter_queues: BTreeSet<String> = t
        .of_type("AWS::SQS::Queue")
        .filter_map(|(_, q)| prop(q, "RedrivePolicy").and_then(|r| r.get("deadLetterTargetArn")).and_then(getatt_of).map(|(r, _)| r))
        .collect();
    assert!(dead_letter_queues.len() >= 4, "the queues' dead-letter queues: {dead_letter_queues:?}");
    for dlq in dead_letter_queues {
        if !watched.contains(&("ApproximateNumberOfMessagesVisible".to_string(), dlq.clone())) {
            problems.push(format!("{dlq}: no alarm on the messages it holds"));
        }
    }
    fail_if_any("the alarms", problems);
}
