//! The `oms-local` binary's commands, run as a user runs them.

use std::process::Command;

fn oms_local(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_oms-local"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .expect("oms-local runs")
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_oms-local"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .expect("oms-local runs")
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn help_names_every_command_and_option() {
    let o = Command::new(env!("CARGO_BIN_EXE_oms-local"))
        .arg("--help")
        .output()
        .unwrap();
    let help = stdout(&o);
    for word in [
        "demo",
        "bench",
        "dlq",
        "order",
        "provision",
        "--port",
        "--data-dir",
        "--config",
        "--aws-endpoint",
        "--aws",
        "OMS_STAFF_TOKEN",
        "OMS_CHANNEL_KEY_",
    ] {
        assert!(
            help.contains(word),
            "--help does not mention {word}:\n{help}"
        );
    }
}

#[test]
fn operator_commands_work_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    // Before anything made the database, a look at it is an error, and makes nothing
    let o = oms_local(dir.path(), &["dlq", "list"]);
    assert!(!o.status.success(), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no database at"),
        "{o:?}"
    );
    assert!(!dir.path().join("oms.sqlite").exists());
    let o = oms_local(dir.path(), &["provision"]);
    assert!(o.status.success(), "{o:?}");
    assert!(dir.path().join("oms.sqlite").exists());

    let o = oms_local(dir.path(), &["dlq", "list"]);
    assert!(o.status.success(), "{o:?}");
    let listed = stdout(&o);
    assert!(
        listed.contains("numbering-dlq: 0 message(s)")
            && listed.contains("notifications-dlq: 0 message(s)"),
        "{listed}"
    );

    let o = oms_local(dir.path(), &["dlq", "redrive", "--queue", "review"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        stdout(&o),
        "moved 0 message(s) from review-dlq back to review\n"
    );

    let o = oms_local(dir.path(), &["order", "show", "2026112700001"]);
    assert!(!o.status.success(), "an unknown order is an error");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no order 2026112700001"),
        "{o:?}"
    );
}

/// The benchmark runs end to end at a small size, accounts for every order and writes its
/// figures (it is a measurement, so nothing here asserts a speed).
#[test]
fn the_benchmark_accounts_for_every_order_and_writes_its_figures() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench.json");
    // The benchmark runs on a temporary database of its own: no --data-dir.
    let o = run(&[
        "bench",
        "--orders",
        "60",
        "--concurrency",
        "8",
        "--rate",
        "20",
        "--rate-seconds",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let table = stdout(&o);
    for line in ["to awaiting_payment", "paid → ready_to_ship", "ceiling:"] {
        assert!(table.contains(line), "{table}");
    }
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(r["orders"], 60);
    assert_eq!(r["not_awaiting_payment"], serde_json::json!({}), "{r:#}");
    assert_eq!(r["not_ready_to_ship"], serde_json::json!({}), "{r:#}");
    assert_eq!(r["received_to_awaiting_payment"]["count"], 60);
    assert_eq!(r["paid_to_ready_to_ship"]["count"], 60);
    assert_eq!(r["intake_at_offered_rate"]["count"], 20);
    assert_eq!(
        r["to_awaiting_payment_slices_per_s"]
            .as_array()
            .unwrap()
            .len(),
        10
    );
    for figure in [
        "to_awaiting_payment_per_s",
        "raw_transactions_per_s",
        "transactions_per_order_to_awaiting_payment",
    ] {
        assert!(r[figure].as_f64().unwrap() > 0.0, "{figure}: {r:#}");
    }
}

/// `demo --help` lists only what the demo uses; the server's port is not among them.
#[test]
fn demo_help_lists_what_the_demo_uses() {
    let help = stdout(&run(&["demo", "--help"]));
    for word in ["--orders", "--seed", "--url", "--config", "new orders"] {
        assert!(help.contains(word), "demo --help lacks {word}:\n{help}");
    }
    assert!(
        !help.contains("--port"),
        "demo --help lists --port:\n{help}"
    );
    // Options that do not apply are refused, not ignored.
    let o = run(&["demo", "--data-dir", "somewhere"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("temporary database"),
        "{o:?}"
    );
    let o = run(&["demo", "--url", "http://127.0.0.1:9", "--config", "x.toml"]);
    assert!(!o.status.success());
}

/// A --data-dir that does not exist is a typo until --create says otherwise: the server does not
/// start an empty shop there.
#[test]
fn a_missing_data_dir_is_an_error_unless_create_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo");
    let o = run(&["--data-dir", missing.to_str().unwrap(), "--port", "0"]);
    assert!(!o.status.success(), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no data directory") && err.contains("--create"),
        "{err}"
    );
    assert!(!missing.exists(), "nothing is made");
    // provision is asked to make it, and does.
    let o = run(&["--data-dir", missing.to_str().unwrap(), "provision"]);
    assert!(o.status.success(), "{o:?}");
    assert!(missing.join("oms.sqlite").exists());
}

/// `staff add` prints a key once; the server takes it and names its holder; `staff revoke`
/// ends it; `staff list` shows both states and never the key.
#[test]
fn staff_keys_are_made_listed_and_revoked_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    assert!(oms_local(dir.path(), &["provision"]).status.success());
    let o = oms_local(
        dir.path(),
        &["staff", "add", "--name", "Zhao Lei", "--role", "operator"],
    );
    assert!(o.status.success(), "{o:?}");
    let made = stdout(&o);
    let key = made
        .lines()
        .find_map(|l| l.strip_prefix("key (shown once; only its hash is kept): "))
        .expect("the key is printed")
        .to_owned();
    let id = key.split('_').nth(2).unwrap().to_owned();
    let o = oms_local(
        dir.path(),
        &["staff", "add", "--name", "x", "--role", "boss"],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("viewer, operator or admin"));

    // The server on the same data directory takes the key.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_oms-local"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--port", &port.to_string()])
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let me = |key: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let o = Command::new("curl")
                .args(["-s", "-w", " %{http_code}", "-H"])
                .arg(format!("authorization: Bearer {key}"))
                .arg(format!("http://127.0.0.1:{port}/staff/me"))
                .output()
                .unwrap();
            let out = stdout(&o);
            if !out.ends_with(" 000") || std::time::Instant::now() > deadline {
                return out;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    assert_eq!(me(&key), r#"{"name":"Zhao Lei","role":"operator"} 200"#);

    let o = oms_local(dir.path(), &["staff", "revoke", &id]);
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).contains("revoked key"), "{o:?}");
    assert!(me(&key).ends_with(" 401"), "a revoked key opens nothing");
    let _ = server.kill();
    let _ = server.wait();

    let listed = stdout(&oms_local(dir.path(), &["staff", "list"]));
    assert!(
        listed.contains(&id) && listed.contains("Zhao Lei") && listed.contains("revoked"),
        "{listed}"
    );
    assert!(!listed.contains(&key), "{listed}");
}

/// `webhooks tail` shows the deliveries the running server made: here to a receiver that
/// answers every POST 501 (Python's http.server), so the delivery waits for its next try.
#[test]
fn webhooks_tail_shows_each_delivery_and_its_last_answer() {
    let dir = tempfile::tempdir().unwrap();
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (port, hook_port) = (free(), free());
    let mut hook = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &hook_port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The receiver listens before anything is sent to it.
    let up = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", hook_port)).is_err()
        && std::time::Instant::now() < up
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let data = dir.path().join("data");
    let mut server = Command::new(env!("CARGO_BIN_EXE_oms-local"))
        .arg("--data-dir")
        .arg(&data)
        .args(["--create", "--port", &port.to_string()])
        .env("OMS_STAFF_TOKEN", "tail-token")
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let curl = |method: &str, path: &str, body: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let o = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", method])
                .args(["-H", "authorization: Bearer tail-token"])
                .args(["-H", "content-type: application/json", "-d", body])
                .arg(format!("http://127.0.0.1:{port}{path}"))
                .output()
                .unwrap();
            let code = stdout(&o);
            if code != "000" || std::time::Instant::now() > deadline {
                return code;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    let subscribe =
        format!(r#"{{"url": "http://127.0.0.1:{hook_port}/hook", "events": ["stock.low"]}}"#);
    assert_eq!(curl("POST", "/webhook-endpoints", &subscribe), "201");
    assert_eq!(
        curl("PUT", "/stock/CUP-002/sh", r#"{"on_hand": 1, "safety": 5}"#),
        "200"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let tail = loop {
        let o = Command::new(env!("CARGO_BIN_EXE_oms-local"))
            .arg("--data-dir")
            .arg(&data)
            .args(["webhooks", "tail"])
            .env("RUST_LOG", "error")
            .output()
            .unwrap();
        let shown = stdout(&o);
        if shown.contains("answered 501") || std::time::Instant::now() > deadline {
            break shown;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let _ = server.kill();
    let _ = hook.kill();
    let _ = server.wait();
    let _ = hook.wait();
    assert!(
        tail.contains("stock.low")
            && tail.contains("pending")
            && tail.contains("attempt(s), answered 501, next try")
            && tail.contains(&format!("127.0.0.1:{hook_port}/hook")),
        "{tail}"
    );
}
