//! herald-local's command line as a user runs it: the `token` subcommand, plain logs when the
//! output is not a terminal, and startup errors as one sentence (issue 11, items 5 and 7).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

fn herald_local() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald-local"));
    for var in ["HERALD_JWT_SECRET", "HERALD_JWT_ISSUER", "HERALD_JWT_AUDIENCE", "HERALD_PORT", "HERALD_HOST", "RUST_LOG"] {
        command.env_remove(var);
    }
    command
}

/// Runs `herald-local token <args>`: (the token's claims, stderr).
fn token(args: &[&str], env: &[(&str, &str)]) -> (Value, String) {
    let out = herald_local().arg("token").args(args).envs(env.iter().copied()).output().expect("herald-local runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "token {args:?} failed: {stderr}");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    let jwt = stdout.trim();
    assert_eq!(jwt.lines().count(), 1, "stdout is the token alone: {stdout:?}");
    let payload = jwt.split('.').nth(1).expect("a JWT");
    let claims = serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    (claims, stderr)
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[test]
fn token_takes_a_role_and_any_claim_and_prints_what_it_signed() {
    let (claims, stderr) =
        token(&["--role", "admin", "--claim", "tenant=7", "--claim", r#"groups=["a","b"]"#, "--claim", "note=hi there"], &[]);
    assert_eq!(claims["role"], "admin");
    assert_eq!(claims["tenant"], 7, "a VALUE that parses as JSON is JSON");
    assert_eq!(claims["groups"], json!(["a", "b"]));
    assert_eq!(claims["note"], "hi there", "else a string");
    let exp = claims["exp"].as_i64().expect("an exp");
    assert!((now() + 3590..=now() + 3600).contains(&exp), "an hour by default: {exp}");
    // What it signed, decoded, on stderr (so that TOKEN=$(…) takes the token alone).
    let printed: Value = serde_json::from_str(stderr.lines().find_map(|l| l.strip_prefix("claims: ")).expect("a claims line")).unwrap();
    assert_eq!(printed, claims);
}

#[test]
fn expired_and_negative_ttl_give_tokens_that_have_expired() {
    let (expired, stderr) = token(&["--user", "42", "--expired"], &[]);
    assert!(expired["exp"].as_i64().unwrap() <= now() - 3590, "{expired}");
    assert!(stderr.contains("expired") && stderr.contains("HERALD_JWT_LEEWAY_SECS"), "{stderr}");
    let (negative, _) = token(&["--user", "42", "--ttl", "-60"], &[]);
    let exp = negative["exp"].as_i64().unwrap();
    assert!((now() - 61..=now() - 59).contains(&exp), "{negative}");
}

#[test]
fn token_follows_the_issuer_and_audience_herald_checks() {
    let (claims, _) = token(&["--user", "42"], &[("HERALD_JWT_ISSUER", "https://id.example.com"), ("HERALD_JWT_AUDIENCE", "herald")]);
    assert_eq!((claims["iss"].as_str(), claims["aud"].as_str()), (Some("https://id.example.com"), Some("herald")));
    let (claims, _) = token(&["--user", "42", "--claim", "iss=other"], &[("HERALD_JWT_ISSUER", "https://id.example.com")]);
    assert_eq!(claims["iss"], "other", "--claim overrides");
}

#[test]
fn token_refuses_a_token_for_nobody_and_bad_claims() {
    for args in [&["token"][..], &["token", "--claim", "novalue"], &["token", "--claim", "=x"]] {
        let out = herald_local().args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("error"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_busy_port_is_one_sentence_and_logs_are_plain_text_when_piped() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let out = herald_local().args(["--port", &port]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let error = stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(error.contains(&format!("127.0.0.1:{port}")) && !error.contains("Bind {"), "{error}");
    assert!(!stderr.contains('\u{1b}') && !String::from_utf8_lossy(&out.stdout).contains('\u{1b}'), "no colour codes when piped");

    // Started with its output piped: the banner and logs carry no ANSI escapes.
    let mut child = herald_local().args(["--port", "0"]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = String::new();
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("health") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.contains("herald-local is ready"), "{seen}");
    assert!(!seen.contains('\u{1b}'), "colour codes in piped output: {seen:?}");
}

/// Every `HERALD_*` name in the source of the handlers, shared and herald-local (tests aside).
fn variables_in_the_code() -> std::collections::BTreeSet<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut dirs = vec![root.join("shared/src"), root.join("local/src")];
    for f in std::fs::read_dir(root.join("functions")).unwrap() {
        dirs.push(f.unwrap().path().join("src"));
    }
    let mut found = std::collections::BTreeSet::new();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                dirs.push(path);
            } else if name.ends_with(".rs") && !name.contains("test") && name != "settings.rs" {
                let text = std::fs::read_to_string(&path).unwrap();
                let mut rest = text.as_str();
                while let Some(at) = rest.find("HERALD_") {
                    rest = &rest[at..];
                    let end = rest.find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')).unwrap_or(rest.len());
                    let var = rest[..end].trim_end_matches('_');
                    // Skip test-only variables (HERALD_TEST_*) and bare prefixes in prose.
                    if var.len() > "HERALD_".len() && !var.starts_with("HERALD_TEST_") {
                        found.insert(var.to_string());
                    }
                    rest = &rest[end..];
                }
            }
        }
    }
    found
}

#[test]
fn every_setting_is_in_the_help_and_in_docs_settings() {
    let table: std::collections::BTreeSet<String> = herald_local::settings::SETTINGS.iter().map(|s| s.var.to_string()).collect();
    let code = variables_in_the_code();
    let missing: Vec<_> = code.difference(&table).collect();
    assert!(missing.is_empty(), "read by the code, not in local/src/settings.rs: {missing:?}");
    let stale: Vec<_> = table.difference(&code).collect();
    assert!(stale.is_empty(), "in local/src/settings.rs, read by no code: {stale:?}");
    let page = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/settings.md")).unwrap();
    for s in herald_local::settings::SETTINGS {
        assert!(page.contains(&format!("| `{}` |", s.var)), "docs/settings.md has no row for {}", s.var);
    }
    let out = herald_local().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for s in herald_local::settings::SETTINGS.iter().filter(|s| s.scope != herald_local::settings::Scope::Lambda) {
        assert!(help.contains(s.var), "--help does not list {}", s.var);
        if !s.default.is_empty() {
            assert!(help.contains(&format!("[default: {}]", s.default)), "--help does not give {}'s default", s.var);
        }
    }
}

/// herald-local with no AWS settings at all: none inherited, no profile files, no instance metadata.
fn without_aws(home: &std::path::Path) -> Command {
    let mut command = herald_local();
    for (var, _) in std::env::vars().filter(|(v, _)| v.starts_with("AWS_")) {
        command.env_remove(var);
    }
    command.env("HOME", home).env("AWS_EC2_METADATA_DISABLED", "true").stdout(Stdio::null());
    command
}

#[test]
fn backend_aws_without_region_or_credentials_says_what_is_missing_in_one_line() {
    let home = std::env::temp_dir().join(format!("herald-cli-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    for (env, missing) in [(&[][..], "AWS_REGION"), (&[("AWS_REGION", "us-east-1")][..], "AWS_ACCESS_KEY_ID")] {
        let out = without_aws(&home).args(["--backend", "aws", "--port", "0"]).envs(env.iter().copied()).output().unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line, not a wall: {stderr}");
        assert!(lines[0].starts_with("error: ") && lines[0].contains(missing) && lines[0].contains("scripts/local-aws"), "{stderr}");
    }
}

#[test]
fn scripts_local_aws_starts_dynamodb_local_moto_and_herald_local_and_stops_them() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut script = Command::new(root.join("scripts/local-aws"))
        .args(["--port", "0"])
        .env("HERALD_LOCAL_BIN", env!("CARGO_BIN_EXE_herald-local"))
        .env("HERALD_TABLE_PREFIX", format!("cli{}-", std::process::id()))
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = script.stderr.take().unwrap();
    let log = std::thread::spawn(move || BufReader::new(stderr).lines().map_while(Result::ok).collect::<Vec<_>>());
    let mut banner = String::new();
    for line in BufReader::new(script.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        banner.push_str(&line);
        banner.push('\n');
        if line.contains("health") {
            break;
        }
    }
    Command::new("kill").args(["-TERM", &script.id().to_string()]).status().unwrap();
    let status = script.wait().unwrap();
    let log = log.join().unwrap().join("\n");
    assert!(banner.contains("herald-local is ready (Aws backend)"), "{banner}\n{log}");
    let prefix = format!("cli{}-", std::process::id());
    assert!(banner.contains(&format!("{prefix}connections")) && banner.contains("(created where missing)"), "{banner}");
    for queue in ["queue          notifications http://127.0.0.1:", "queue          fan-out http://127.0.0.1:", "dead letters http://"] {
        assert!(banner.contains(queue), "no {queue:?} in {banner}");
    }
    assert!(!status.success(), "stopped by the signal");
    // The services it started are gone with it.
    let dynamodb =
        log.lines().find_map(|l| l.split("DynamoDB: http://").nth(1)).and_then(|r| r.split_whitespace().next()).expect(&log).to_string();
    std::thread::sleep(Duration::from_millis(500));
    assert!(std::net::TcpStream::connect(&dynamodb).is_err(), "DynamoDB Local still listens on {dynamodb}");
}

#[test]
fn the_defaults_in_the_settings_table_are_the_ones_the_code_uses() {
    let default = |var: &str| -> String {
        herald_local::settings::SETTINGS.iter().find(|s| s.var == var).unwrap_or_else(|| panic!("{var} has no row")).default.to_string()
    };
    let options = herald_local::Options::from_lookup(&|_| None).expect("options without any variable");
    let d = &options.delivery;
    let used = [
        ("HERALD_PORT", options.port.to_string()),
        ("HERALD_HOST", options.host.clone()),
        ("HERALD_ACK_TIMEOUT_MS", d.ack_timeout.as_millis().to_string()),
        ("HERALD_MAX_ATTEMPTS", d.max_attempts.to_string()),
        ("HERALD_CONNECTION_TTL_SECS", d.connection_ttl.as_secs().to_string()),
        ("HERALD_CLAIM_LEASE_MS", d.claim_lease.as_millis().to_string()),
        ("HERALD_POST_TIMEOUT_MS", options.post_timeout.as_millis().to_string()),
        ("HERALD_VISIBILITY_TIMEOUT_MS", options.visibility_timeout.as_millis().to_string()),
        ("HERALD_IDLE_TIMEOUT_SECS", options.idle_timeout.as_secs().to_string()),
        ("HERALD_QUEUE_NAME", options.queue_name.clone()),
        ("HERALD_FANOUT_QUEUE_NAME", options.fanout_queue_name.clone()),
        ("HERALD_PLATFORM_QUEUE_NAME", options.platform_queue_name.clone()),
    ];
    for (var, value) in used {
        assert_eq!(default(var), value, "{var}: the table says one default, the code uses another");
    }
    let (_, connections) = options.tables.iter().next().expect("a table");
    assert!(connections.starts_with(&default("HERALD_TABLE_PREFIX")), "{connections}");
}
