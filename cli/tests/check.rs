//! `relay check`: the rules table, the missing settings, and the exit code.

use crate::support::{TempDir, run, secrets, text};

#[test]
fn the_shipped_rules_print_as_a_table_and_pass_with_their_secrets() {
    let out = run(&["check"], &secrets());
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.starts_with("triggers.toml (embedded): 5 rules"), "{stdout}");
    for rule in [
        "segment-trial-started",
        "segment-plan-upgraded",
        "segment-feature-milestone",
        "segment-churn-signal",
        "cio-high-value-alert",
    ] {
        assert!(stdout.lines().any(|l| l.starts_with(rule)), "{rule} missing:\n{stdout}");
    }
    assert!(stdout.contains("ok: `relay serve` starts with this configuration (dry run"), "{stdout}");
}

#[test]
fn a_missing_secret_is_listed_and_only_its_source_is_off() {
    let out = run(&["check"], &[("CIO_WEBHOOK_SECRET", "x")]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "relay serve starts: {stdout}{}", text(&out.stderr));
    let segment = stdout.lines().find(|l| l.contains("SEGMENT_SHARED_SECRET")).unwrap_or_default();
    assert!(segment.contains("MISSING") && segment.contains("/webhooks/segment is off"), "{stdout}");
    assert!(stdout.lines().any(|l| l.contains("CIO_WEBHOOK_SECRET") && l.contains("set (1 secret)")), "{stdout}");
}

#[test]
fn a_bad_rules_file_names_the_rule_and_the_field() {
    let dir = TempDir::new("check");
    let path = dir.0.join("triggers.toml");
    let file = "[[rule]]\nname = \"upgrade\"\nsource = \"segment\"\nevent = \"plan_upgraded\"\naction = \"research\"\ndaily_cap = 0\nresearch = { prompt = \"p\" }\n";
    std::fs::write(&path, file).unwrap();
    let out = run(&["check", "--triggers", path.to_str().unwrap()], &secrets());
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("rule `upgrade`, field `daily_cap`"), "{stderr}");

    // The same file through TRIGGERS_PATH, as the functions read it.
    let mut env = secrets();
    env.push(("TRIGGERS_PATH", path.to_str().unwrap()));
    let out = run(&["check"], &env);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("field `daily_cap`"));

    // A file whose rules need only Segment: Customer.io needs no secret then.
    std::fs::write(&path, file.replace("daily_cap = 0\n", "")).unwrap();
    let out = run(&["check", "--triggers", path.to_str().unwrap()], &[("SEGMENT_SHARED_SECRET", "s")]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains(": 1 rule\n"), "{stdout}");
}

#[test]
fn destinations_show_which_rules_use_them_and_what_is_missing() {
    let dir = TempDir::new("check-deliver");
    let path = dir.0.join("triggers.toml");
    let file = "[[rule]]\nname = \"upgrade\"\nsource = \"segment\"\nevent = \"plan_upgraded\"\naction = \"research\"\nresearch = { prompt = \"p\" }\ndeliver = [\"slack\", \"segment\"]\n";
    std::fs::write(&path, file).unwrap();
    let env = [
        ("SEGMENT_SHARED_SECRET", "s"),
        ("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T0/B0/check-secret-part"),
    ];
    let out = run(&["check", "--triggers", path.to_str().unwrap()], &env);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "a destination without credentials does not stop the relay: {stdout}");
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("{name}: {stdout}"))
            .to_owned()
    };
    assert!(stdout.lines().any(|l| l.starts_with("upgrade") && l.ends_with("slack, segment")), "{stdout}");
    assert!(line("slack ").contains("used by upgrade; ready"), "{stdout}");
    let segment = line("segment ");
    assert!(segment.contains("used by upgrade; OFF") && segment.contains("SEGMENT_WRITE_KEY is not set"), "{segment}");
    assert!(line("webhook ").contains("no rule delivers here; not set"), "{stdout}");
    assert!(!stdout.contains("check-secret-part"), "a credential is never printed: {stdout}");

    // An unknown destination names the rule and the field.
    std::fs::write(&path, file.replace("\"segment\"]", "\"teams\"]")).unwrap();
    let out = run(&["check", "--triggers", path.to_str().unwrap()], &env);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("rule `upgrade`, field `deliver[1]`: `teams` is not a destination"),
        "{}",
        text(&out.stderr)
    );
}
