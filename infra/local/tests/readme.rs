//! The README's first session, run verbatim: `oms-local` started the way "Try it" says, then
//! every `$ curl` line of its console block, from the repository root, through the real `curl`.
//! Only the port (a free one instead of 3000) and the ids and numbers the run hands out (learnt
//! from each answer's `Location` and `number`) differ from the page. Every status line, header
//! and `"field":value` the README shows must be in the answer; timestamps and `...` are the
//! README's elisions.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How the README runs `oms-local`'s commands; the test runs the binary it built.
const CARGO_RUN: &str = "cargo run -q -p oms-local --";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The fenced block that starts at the first line equal to `fence` after `from`.
fn block(readme: &str, fence: &str, from: usize) -> (String, usize) {
    let lines: Vec<&str> = readme.lines().collect();
    let start = (from..lines.len())
        .find(|&i| lines[i] == fence)
        .unwrap_or_else(|| panic!("README has no {fence} block"));
    let end = (start + 1..lines.len())
        .find(|&i| lines[i] == "```")
        .expect("closed block");
    (lines[start + 1..end].join("\n"), end)
}

/// A command of the console block and what the README shows it answering.
struct Step {
    command: String,
    expected: String,
}

fn steps(console: &str) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::new();
    for line in console.lines() {
        if let Some(cmd) = line.strip_prefix("$ ") {
            out.push(Step {
                command: cmd.to_owned(),
                expected: String::new(),
            });
        } else if let Some(last) = out.last_mut() {
            last.expected.push_str(line);
            last.expected.push('\n');
        }
    }
    out
}

/// `"key":value` pairs (string, number or boolean values) in the README's text, as written.
fn pairs(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'"' {
            i += 1;
            continue;
        }
        let Some(close) = text[i + 1..].find('"').map(|j| i + 1 + j) else {
            break;
        };
        let key = &text[i + 1..close];
        let rest = &text[close + 1..];
        if !rest.starts_with(':') || key.is_empty() {
            i = close + 1;
            continue;
        }
        let value_start = close + 2;
        let v = &text[value_start..];
        let value = if let Some(stripped) = v.strip_prefix('"') {
            match stripped.find('"') {
                Some(j) => format!("\"{}\"", &stripped[..j]),
                None => break,
            }
        } else {
            v.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
                .collect()
        };
        if !value.is_empty() {
            out.push((key.to_owned(), value.clone()));
        }
        i = value_start + value.len().max(1);
    }
    out
}

fn looks_like_time(value: &str) -> bool {
    let v = value.trim_matches('"');
    v.len() > 10 && v.as_bytes()[4] == b'-' && v.contains('T')
}

/// What of `expected` is missing from `actual` (empty: the answer shows everything).
fn missing(expected: &str, actual: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in expected.lines() {
        if line.starts_with("HTTP/") && !actual.contains(line) {
            out.push(line.to_owned());
        }
        // Headers: the name, and for Location the shape.
        if let Some((name, value)) = line.split_once(": ")
            && !line.starts_with('{')
            && !line.starts_with(' ')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            let header = actual.lines().find(|l| {
                l.to_ascii_lowercase()
                    .starts_with(&format!("{}:", name.to_ascii_lowercase()))
            });
            match header {
                None => out.push(format!("header {name}")),
                Some(h) if name == "location" && !h.contains(value) => out.push(line.to_owned()),
                Some(_) => {}
            }
        }
    }
    let flat: String = actual
        .chars()
        .filter(|c| *c != '\n' && *c != '\r')
        .collect();
    for (key, value) in pairs(expected) {
        if looks_like_time(&value) {
            continue;
        }
        let wanted = match value.find("...") {
            Some(at) => format!("\"{key}\":{}", &value[..at]),
            None => format!("\"{key}\":{value}"),
        };
        if !flat.contains(&wanted) {
            out.push(wanted);
        }
    }
    out
}

/// README value → the run's value, learnt from answers: each `Location` id, each `number`.
fn learn(expected: &str, actual: &str, map: &mut BTreeMap<String, String>) {
    let location = |text: &str| {
        text.lines()
            .find(|l| l.to_ascii_lowercase().starts_with("location: /orders/"))
            .map(|l| l["location: /orders/".len()..].trim().to_owned())
    };
    if let (Some(e), Some(a)) = (location(expected), location(actual)) {
        map.insert(e, a);
    }
    let number = |text: &str| {
        pairs(text)
            .into_iter()
            .find(|(k, _)| k == "number")
            .map(|(_, v)| v.trim_matches('"').to_owned())
    };
    if let (Some(e), Some(a)) = (number(expected), number(actual)) {
        map.insert(e, a);
    }
}

fn substitute(text: &str, map: &BTreeMap<String, String>) -> String {
    map.iter()
        .fold(text.to_owned(), |t, (from, to)| t.replace(from, to))
}

#[test]
fn the_readme_session_runs_verbatim() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    // "Try it": environment assignments, then `cargo run -p oms-local`.
    let try_it = readme.find("## Try it").expect("a Try it section");
    let (start, after) = block(&readme, "```sh", readme[..try_it].lines().count());
    let start = start.trim();
    let (env, cargo) = start
        .split_once(" cargo run -p oms-local")
        .unwrap_or_else(|| panic!("Try it starts oms-local with cargo run: {start}"));
    assert!(
        cargo.trim().is_empty(),
        "no extra arguments expected: {start}"
    );
    let (console, _) = block(&readme, "```console", after);
    let steps = steps(&console);
    assert!(steps.len() >= 4, "the session has its commands");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = tempfile::tempdir().unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_oms-local"));
    for assignment in env.split_whitespace() {
        let (k, v) = assignment.split_once('=').expect("NAME=value");
        server.env(k, v);
    }
    let mut child = server
        .args(["--port", &port.to_string(), "--data-dir"])
        .arg(data.path().join("oms"))
        .arg("--create")
        .current_dir(root())
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("oms-local starts");
    let mut banner = String::new();
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    for line in lines.by_ref() {
        let line = line.expect("banner");
        banner.push_str(&line);
        banner.push('\n');
        if line.starts_with("oms-local: try") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    assert!(banner.contains("serving on"), "{banner}");
    assert!(
        banner.contains("channels: ") && banner.contains("TEA-001"),
        "the banner names channels and SKUs: {banner}"
    );

    let mut map = BTreeMap::new();
    let mut failures = Vec::new();
    for step in &steps {
        let command = substitute(&step.command, &map)
            .replace("localhost:3000", &format!("localhost:{port}"))
            .replace(CARGO_RUN, env!("CARGO_BIN_EXE_oms-local"));
        let ours = !command.starts_with("curl ");
        assert!(
            !ours || step.command.contains(CARGO_RUN),
            "a curl or an oms-local command: {command}"
        );
        // A read may run before the pipeline got there, and so may a courier's push (the
        // parcel may not be made yet): a person would try again. A payment is not repeated.
        let again = if ours {
            command.contains(" courier ")
        } else {
            !command.contains(" -d ")
        };
        let deadline = Instant::now() + Duration::from_secs(if again { 20 } else { 0 });
        let (actual, left) = loop {
            let out = Command::new("sh")
                .arg("-c")
                .arg(&command)
                .current_dir(root())
                .output()
                .expect("the command runs");
            let actual = String::from_utf8_lossy(&out.stdout).into_owned();
            let mut attempt = map.clone();
            learn(&step.expected, &actual, &mut attempt);
            let mut left = missing(&substitute(&step.expected, &attempt), &actual);
            if ours {
                // It succeeds and says what the README shows, up to the README's elision.
                let shown = substitute(step.expected.lines().next().unwrap_or_default(), &attempt);
                let shown = shown.split("...").next().unwrap_or_default().to_owned();
                if !out.status.success() || !actual.starts_with(&shown) {
                    left.push(format!(
                        "{shown} (exit {:?}; {})",
                        out.status.code(),
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
            }
            if left.is_empty() || Instant::now() >= deadline {
                map = attempt;
                break (actual, left);
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        if !left.is_empty() {
            failures.push(format!("$ {command}\nmissing {left:?}\nin {actual}"));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(map.len() >= 3, "ids and the number were learnt: {map:?}");
}

#[test]
fn the_matcher_sees_what_is_missing() {
    let expected = "HTTP/1.1 202 Accepted\nlocation: /orders/x\n\n{\"status\":\"received\",\"n\":4,\"at\":\"2026-11-25T11:35:34Z\",\"reason\":\"stock reserved in nj; payment due by ...\"}";
    let good = "HTTP/1.1 202 Accepted\r\nLocation: /orders/x\r\n\r\n{\"status\":\"received\",\"n\":4,\"at\":\"2027-01-01T00:00:00Z\",\"reason\":\"stock reserved in nj; payment due by 2026\"}";
    assert_eq!(missing(expected, good), Vec::<String>::new());
    let bad = "HTTP/1.1 400 Bad Request\r\n\r\n{\"status\":\"numbered\",\"n\":5}";
    let left = missing(expected, bad);
    assert_eq!(left.len(), 5, "{left:?}");
}
