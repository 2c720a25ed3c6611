//! Tokens: the `Verifier` (HS256; with and without issuer and audience) over random strings and
//! structured mutations of tokens: headers with other algorithms (`none` included), claims of the
//! wrong types or times, deep JSON, huge segments, wrong and edited signatures.
//!
//! The oracle is independent of the verifier: whenever a token is accepted, its signature is
//! recomputed over its first two segments with the secret and compared, and its header and
//! claims are read back and checked against the configuration.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use herald::auth::{AuthConfig, AuthError, Identity, Verifier, issue_hs256};
use herald::domain::{epoch_secs, now};
use jsonwebtoken::{Algorithm, EncodingKey};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value, json};

use super::inputs::{self, Bytes, Edit};
use super::{Budget, Report, block_on, drive, ensure};

const SECRET: &str = "herald-fuzz-token-secret";
const ISSUER: &str = "https://auth.example.com/";
const AUDIENCE: &str = "herald";
/// The verifier's default leeway, and a margin for the time a case takes.
const LEEWAY_SECS: i64 = 30 + 5;

/// A token to verify.
#[derive(Debug, Clone)]
pub enum TokenInput {
    /// Any text.
    Any(String),
    /// `header.payload.signature` from these texts, then edited byte by byte and wrapped.
    Built { header: String, payload: String, signature: Signature, edits: Vec<Edit>, wrap: Wrap },
    /// A well-formed token of the right secret: must be accepted (by the strict verifier only
    /// with the right `iss` and `aud`).
    Good { sub: String, publisher: bool, with_iss_aud: bool, wrap: Wrap },
}

#[derive(Debug, Clone)]
pub enum Signature {
    /// HMAC-SHA256 with the secret over `header.payload`, as a valid token has.
    Right,
    /// The same with another secret.
    WrongSecret,
    Empty,
    Random(Bytes),
    /// The right signature with base64 padding.
    Padded,
    /// The right signature in the standard alphabet (`+`, `/`).
    StandardAlphabet,
}

#[derive(Debug, Clone)]
pub enum Wrap {
    None,
    /// `Bearer <token>` (any case).
    Bearer(bool),
    /// Surrounding whitespace.
    Spaces,
    /// A fourth segment.
    ExtraDot,
    /// The payload segment grown by this many base64 letters.
    Huge(usize),
}

fn b64(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(text)
}

fn hmac(secret: &str, message: &str) -> String {
    jsonwebtoken::crypto::sign(message.as_bytes(), &EncodingKey::from_secret(secret.as_bytes()), Algorithm::HS256)
        .expect("HS256 signs any message")
}

fn wrap(token: String, wrap: &Wrap) -> String {
    match wrap {
        Wrap::None => token,
        Wrap::Bearer(lower) => format!("{} {token}", if *lower { "bearer" } else { "Bearer" }),
        Wrap::Spaces => format!(" \t{token}\n "),
        Wrap::ExtraDot => format!("{token}.e30"),
        Wrap::Huge(n) => match token.split_once('.') {
            Some((head, rest)) => format!("{head}.{}{rest}", "A".repeat(*n)),
            None => token,
        },
    }
}

impl TokenInput {
    pub fn token(&self) -> String {
        match self {
            Self::Any(text) => text.clone(),
            Self::Built { header, payload, signature, edits, wrap: w } => {
                let signing_input = format!("{}.{}", b64(header), b64(payload));
                let right = || hmac(SECRET, &signing_input);
                let signature = match signature {
                    Signature::Right => right(),
                    Signature::WrongSecret => hmac("not-the-secret", &signing_input),
                    Signature::Empty => String::new(),
                    Signature::Random(b) => URL_SAFE_NO_PAD.encode(&b.0),
                    Signature::Padded => URL_SAFE.encode(URL_SAFE_NO_PAD.decode(right()).unwrap_or_default()),
                    Signature::StandardAlphabet => STANDARD.encode(URL_SAFE_NO_PAD.decode(right()).unwrap_or_default()).replace('=', ""),
                };
                let token = format!("{signing_input}.{signature}");
                let token =
                    if edits.is_empty() { token } else { String::from_utf8_lossy(&inputs::apply(token.as_bytes(), edits)).into_owned() };
                wrap(token, w)
            }
            Self::Good { sub, publisher, with_iss_aud, wrap: w } => {
                let mut claims = json!({"sub": sub, "exp": epoch_secs(now()) + 3600});
                if *publisher {
                    claims["scope"] = "notify:publish".into();
                }
                if *with_iss_aud {
                    claims["iss"] = ISSUER.into();
                    claims["aud"] = json!(["other", AUDIENCE]);
                }
                wrap(issue_hs256(SECRET, &claims).expect("an HS256 token"), w)
            }
        }
    }
}

fn header() -> BoxedStrategy<String> {
    let alg = prop_oneof![
        4 => Just(Value::from("HS256")),
        1 => select(vec!["none", "None", "NONE", "HS384", "HS512", "RS256", "ES256", "PS256", "EdDSA", "hs256", "HS256 ", ""]).prop_map(Value::from),
        1 => inputs::json(),
    ];
    prop_oneof![
        4 => (alg, proptest::option::of(inputs::text()), inputs::object()).prop_map(|(alg, kid, extra)| {
            let mut h = extra;
            h.insert("alg".into(), alg);
            h.insert("typ".into(), "JWT".into());
            if let Some(kid) = kid {
                h.insert("kid".into(), kid.into());
            }
            Value::Object(h).to_string()
        }),
        1 => Just(r#"{"alg":"HS256","alg":"none"}"#.to_string()),
        1 => Just(r#"{"alg":"none","alg":"HS256"}"#.to_string()),
        1 => inputs::text(),
        1 => inputs::deep_json(),
    ]
    .boxed()
}

fn claims() -> BoxedStrategy<Map<String, Value>> {
    let t = epoch_secs(now());
    let time = move || -> BoxedStrategy<Value> {
        prop_oneof![
            4 => select(vec![t + 3600, t - 3600, t - 20, t - 100, t + 20, 0, -1, i64::MAX, i64::MIN]).prop_map(Value::from),
            1 => Just(Value::from((t + 3600) as f64 + 0.5)),
            1 => Just(Value::from((t + 3600).to_string())),
            1 => select(vec![u64::MAX]).prop_map(Value::from),
            1 => inputs::json(),
        ]
        .boxed()
    };
    let ids = &["42", "1589", "u-1", "b1fe6a68-f7b5-4c2c-a52b-97494403d2ce"];
    let entries: Vec<BoxedStrategy<Option<(String, Value)>>> = vec![
        proptest::option::weighted(0.9, time().prop_map(|v| ("exp".to_string(), v))).boxed(),
        proptest::option::weighted(0.2, time().prop_map(|v| ("nbf".to_string(), v))).boxed(),
        proptest::option::weighted(0.2, time().prop_map(|v| ("iat".to_string(), v))).boxed(),
        proptest::option::weighted(0.7, inputs::id_value(ids).prop_map(|v| ("sub".to_string(), v))).boxed(),
        proptest::option::weighted(0.2, inputs::id_value(ids).prop_map(|v| ("user_id".to_string(), v))).boxed(),
        proptest::option::weighted(0.2, inputs::id_value(ids).prop_map(|v| ("request_id".to_string(), v))).boxed(),
        proptest::option::weighted(0.2, inputs::id_value(ids).prop_map(|v| ("admin_id".to_string(), v))).boxed(),
        proptest::option::weighted(0.2, prop_oneof![Just(Value::from("admin")), inputs::json()].prop_map(|v| ("role".to_string(), v)))
            .boxed(),
        proptest::option::weighted(
            0.3,
            prop_oneof![
                Just(Value::from("notify:publish")),
                Just(Value::from("read notify:publish")),
                Just(json!(["notify:publish"])),
                inputs::json(),
            ]
            .prop_map(|v| ("scope".to_string(), v)),
        )
        .boxed(),
        proptest::option::weighted(
            0.5,
            prop_oneof![3 => Just(Value::from(ISSUER)), 1 => Just(Value::from("https://evil.example.com/")), 1 => inputs::json()]
                .prop_map(|v| ("iss".to_string(), v)),
        )
        .boxed(),
        proptest::option::weighted(
            0.5,
            prop_oneof![
                2 => Just(Value::from(AUDIENCE)),
                2 => Just(json!(["x", AUDIENCE])),
                1 => Just(json!(["x"])),
                1 => Just(json!([[AUDIENCE]])),
                1 => inputs::json(),
            ]
            .prop_map(|v| ("aud".to_string(), v)),
        )
        .boxed(),
    ];
    (entries, inputs::object()).prop_map(|(entries, extra)| extra.into_iter().chain(entries.into_iter().flatten()).collect()).boxed()
}

fn payload() -> BoxedStrategy<String> {
    let t = epoch_secs(now());
    prop_oneof![
        8 => claims().prop_map(|c| Value::Object(c).to_string()),
        1 => Just(format!(r#"{{"sub":"42","exp":{},"exp":{}}}"#, t - 3600, t + 3600)),
        1 => Just(format!(r#"{{"sub":"42","exp":{},"exp":{}}}"#, t + 3600, t - 3600)),
        1 => inputs::deep_json().prop_map(move |d| format!(r#"{{"sub":"42","exp":{},"x":{d}}}"#, t + 3600)),
        1 => inputs::text(),
    ]
    .boxed()
}

fn signature() -> BoxedStrategy<Signature> {
    prop_oneof![
        6 => Just(Signature::Right),
        1 => Just(Signature::WrongSecret),
        1 => Just(Signature::Empty),
        1 => vec(any::<u8>(), 0..40).prop_map(|b| Signature::Random(Bytes(b))),
        1 => Just(Signature::Padded),
        1 => Just(Signature::StandardAlphabet),
    ]
    .boxed()
}

fn wrapping() -> BoxedStrategy<Wrap> {
    prop_oneof![
        8 => Just(Wrap::None),
        1 => any::<bool>().prop_map(Wrap::Bearer),
        1 => Just(Wrap::Spaces),
        1 => Just(Wrap::ExtraDot),
        1 => select(vec![16 * 1024, 100_000]).prop_map(Wrap::Huge),
    ]
    .boxed()
}

fn token() -> BoxedStrategy<TokenInput> {
    let no_edits = Just(Vec::<Edit>::new()).boxed();
    prop_oneof![
        1 => prop_oneof![inputs::text(), inputs::re("[A-Za-z0-9_.-]{0,80}")].prop_map(TokenInput::Any),
        6 => (header(), payload(), signature(), prop_oneof![3 => no_edits, 1 => inputs::edits()], wrapping())
            .prop_map(|(header, payload, signature, edits, wrap)| TokenInput::Built { header, payload, signature, edits, wrap }),
        1 => (inputs::re("[a-z0-9-]{1,40}"), any::<bool>(), any::<bool>(), prop_oneof![Just(Wrap::None), any::<bool>().prop_map(Wrap::Bearer), Just(Wrap::Spaces)])
            .prop_map(|(sub, publisher, with_iss_aud, wrap)| TokenInput::Good { sub, publisher, with_iss_aud, wrap }),
    ]
    .boxed()
}

/// The token as the verifier reads it: trimmed, a leading `Bearer ` dropped.
fn bare(token: &str) -> &str {
    let token = token.trim();
    match token.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case("bearer ") => token[7..].trim_start(),
        _ => token,
    }
}

/// base64url, as a lenient reader would take it: with or without padding.
fn decode_segment(segment: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(segment).ok().or_else(|| URL_SAFE.decode(segment).ok())
}

/// Why an accepted token should not have been, if it should not.
fn audit_accepted(token: &str, identity: &Identity, strict: bool) -> Result<(), String> {
    let token = bare(token);
    let parts: Vec<&str> = token.split('.').collect();
    ensure!(parts.len() == 3, "accepted a token of {} segments", parts.len());
    let expected = hmac(SECRET, &format!("{}.{}", parts[0], parts[1]));
    ensure!(parts[2] == expected, "accepted signature {:?}; the right one is {expected:?}", parts[2]);
    let header: Value = decode_segment(parts[0])
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| "accepted a header that is not base64url JSON".to_string())?;
    ensure!(header["alg"] == "HS256", "accepted alg {}", header["alg"]);
    let claims: Map<String, Value> = decode_segment(parts[1])
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| "accepted claims that are not a base64url JSON object".to_string())?;
    let t = epoch_secs(now());
    let exp = claims.get("exp").and_then(Value::as_f64).ok_or_else(|| format!("accepted exp {:?}", claims.get("exp")))?;
    let expired = exp < (t - LEEWAY_SECS) as f64;
    ensure!(!expired, "accepted exp {exp}, expired at {t}");
    if let Some(nbf) = claims.get("nbf") {
        let nbf = nbf.as_f64().ok_or_else(|| format!("accepted nbf {nbf}"))?;
        let early = nbf > (t + LEEWAY_SECS) as f64;
        ensure!(!early, "accepted nbf {nbf}, not yet valid at {t}");
    }
    if strict {
        ensure!(claims.get("iss") == Some(&Value::from(ISSUER)), "the strict verifier accepted iss {:?}", claims.get("iss"));
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => a == AUDIENCE,
            Some(Value::Array(items)) => items.iter().any(|a| a == AUDIENCE),
            _ => false,
        };
        ensure!(aud_ok, "the strict verifier accepted aud {:?}", claims.get("aud"));
    }
    let from_claims = Identity::from_claims(&claims);
    ensure!(from_claims.as_ref() == Ok(identity), "identity {identity:?}, the claims say {from_claims:?}");
    for id in [&identity.user_id, &identity.request_id, &identity.admin_id].into_iter().flatten() {
        ensure!((1..=256).contains(&id.chars().count()), "an id of {} characters", id.chars().count());
    }
    Ok(())
}

fn audit_refused(e: &AuthError) -> Result<(), String> {
    ensure!(e.status() == 401, "a bad token answered {} ({e:?}); token problems are 401", e.status());
    ensure!(!e.code().is_empty() && !e.to_string().is_empty(), "a refusal without code or text: {e:?}");
    Ok(())
}

/// The two verifiers: any issuer and audience, and `ISSUER` / `AUDIENCE` required.
pub(crate) struct Verifiers {
    plain: Verifier,
    strict: Verifier,
}

impl Verifiers {
    pub(crate) fn new() -> Result<Self, String> {
        let plain = Verifier::new(&AuthConfig::hs256(SECRET)).map_err(|e| e.to_string())?;
        let strict = Verifier::new(&AuthConfig::hs256(SECRET).with_issuer(ISSUER).with_audience(AUDIENCE)).map_err(|e| e.to_string())?;
        Ok(Self { plain, strict })
    }
}

fn check_with(verifiers: &Verifiers, input: &TokenInput) -> Result<(), String> {
    let token = input.token();
    for (verifier, strict) in [(&verifiers.plain, false), (&verifiers.strict, true)] {
        let result = block_on(verifier.verify(&token));
        match &result {
            Ok(identity) => audit_accepted(&token, identity, strict)
                .map_err(|e| format!("{} verifier: {e}", if strict { "strict" } else { "plain" }))?,
            Err(e) => audit_refused(e)?,
        }
        if let TokenInput::Good { sub, publisher, with_iss_aud, .. } = input {
            if !strict || *with_iss_aud {
                let identity = result
                    .as_ref()
                    .map_err(|e| format!("a good token was refused by the {} verifier: {e:?}", if strict { "strict" } else { "plain" }))?;
                ensure!(identity.user_id.as_deref() == Some(sub.as_str()), "sub {sub:?} read as {:?}", identity.user_id);
                ensure!(identity.publisher == *publisher, "publisher {publisher}, read as {}", identity.publisher);
            } else {
                ensure!(result.is_err(), "the strict verifier accepted a token without iss and aud");
            }
        }
    }
    Ok(())
}

pub fn check_token(input: &TokenInput) -> Result<(), String> {
    check_with(&Verifiers::new()?, input)
}

pub(super) fn run_tokens(budget: &Budget, seed: u64) -> Report {
    let verifiers = match Verifiers::new() {
        Ok(v) => v,
        Err(e) => panic!("the fuzz verifiers: {e}"),
    };
    drive("tokens", budget, seed, token(), |input| check_with(&verifiers, input))
}
