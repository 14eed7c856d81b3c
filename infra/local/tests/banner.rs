//! The startup banner's "try" commands, run as printed, from the repository root, through the
//! real shell, `curl` and `oms-local`: only `cargo run -q -p oms-local --` becomes the built
//! binary's path and `<id from Location>` the id the first command's answer gives. They place
//! the example order, read it with the printed token, pay it and deliver it: the order reaches
//! the door with nothing but the banner. (The last line, `demo --url`, is played against a
//! running runtime by `tests/tests/operations.rs`.)

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `command` in `sh` until `ok` holds for its exit and output, for up to `wait`.
fn run_until(command: &str, wait: Duration, ok: impl Fn(bool, &str) -> bool) -> (bool, String) {
    let deadline = Instant::now() + wait;
    loop {
        let out = Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(root())
            .env_remove("OMS_STAFF_TOKEN")
            .output()
            .expect("sh runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let success = out.status.success();
        if ok(success, &text) || Instant::now() >= deadline {
            return (success, text);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn the_banner_commands_take_the_example_order_to_the_door() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = tempfile::tempdir().unwrap();
    // Given oms-local started as the README's first command does (no token: it makes one)
    let mut child = Command::new(env!("CARGO_BIN_EXE_oms-local"))
        .args(["--port", &port.to_string(), "--data-dir"])
        .arg(data.path().join("oms"))
        .arg("--create")
        .current_dir(root())
        .env_remove("OMS_STAFF_TOKEN")
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("oms-local starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut commands = Vec::new();
    let mut banner = String::new();
    let mut trying = false;
    for line in lines.by_ref() {
        let line = line.expect("banner");
        banner.push_str(&line);
        banner.push('\n');
        if line.starts_with("oms-local: try") {
            trying = true;
            continue;
        }
        if trying {
            let Some(cmd) = line.strip_prefix("  ") else {
                break;
            };
            // What follows three spaces and a parenthesis says what the command does.
            let cmd = cmd.split("   (").next().unwrap_or(cmd).to_owned();
            let done = cmd.contains(" demo --url ");
            commands.push(cmd);
            if done {
                break;
            }
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let binary = env!("CARGO_BIN_EXE_oms-local");
    let commands: Vec<String> = commands
        .iter()
        .map(|c| c.replace("cargo run -q -p oms-local --", binary))
        .collect();
    let [place, read, pay, courier, demo] = commands.as_slice() else {
        panic!("the banner prints five commands to try: {banner}");
    };
    assert!(
        demo.contains(&format!("--url http://127.0.0.1:{port}")),
        "{demo}"
    );

    // When the first command places the example order
    let (_, answer) = run_until(place, Duration::ZERO, |_, _| true);
    assert!(answer.contains("HTTP/1.1 202"), "{place}\n{answer}");
    let id = answer
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("location: /orders/")
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("a Location: {answer}"));
    let with_id = |c: &str| c.replace("<id from Location>", &id);
    // Then the second reads it with the printed token, until it waits for its payment
    let (_, order) = run_until(&with_id(read), Duration::from_secs(20), |_, out| {
        out.contains("\"status\":\"awaiting_payment\"")
    });
    assert!(
        order.contains("\"status\":\"awaiting_payment\""),
        "{read}\n{order}"
    );
    // And the third pays it, the fourth delivers its parcels (once dispatch made them)
    let (paid, said) = run_until(&with_id(pay), Duration::ZERO, |ok, _| ok);
    assert!(paid && said.starts_with("paid 99.80 CNY"), "{pay}\n{said}");
    let (delivered, said) = run_until(&with_id(courier), Duration::from_secs(20), |ok, _| ok);
    assert!(
        delivered && said.contains("delivered pushed for"),
        "{courier}\n{said}"
    );
    let (_, order) = run_until(&with_id(read), Duration::from_secs(20), |_, out| {
        out.contains("\"status\":\"delivered\"")
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(order.contains("\"status\":\"delivered\""), "{order}");
}
