//! `lanscatter simulate` as a user runs it: the real binary, JSON summary and plain drawing.

mod common;

fn simulate(args: &[&str]) -> std::process::Output {
    common::cli(["simulate"])
        .args(["--peers", "4", "--chunks", "32", "--chunk-size", "1M", "--seed", "3"])
        .args(args)
        .output()
        .expect("runs the binary")
}

#[test]
fn json_summary_has_the_promised_fields() {
    let out = simulate(&["--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    for key in ["seconds", "bound_seconds", "efficiency", "master_upload_bytes", "all_complete"] {
        assert!(v.get(key).is_some(), "missing {key}: {v}");
    }
    assert_eq!(v["all_complete"], true);
    assert!(v["efficiency"].as_f64().is_some_and(|e| e > 0.5 && e <= 1.0), "{v}");
    // Same seed, same simulation (wall-clock fields aside).
    let mut again: serde_json::Value = serde_json::from_slice(&simulate(&["--json"]).stdout).expect("JSON");
    let mut v = v;
    for x in [&mut v, &mut again] {
        let o = x.as_object_mut().expect("object");
        o.remove("wall_seconds");
        o.remove("max_round_ms");
    }
    assert_eq!(again, v);
}

#[test]
fn plain_drawing_when_not_a_terminal() {
    let out = simulate(&["--draw-every", "0.5", "--policy", "naive"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains('\x1b'), "no escape codes in a pipe");
    assert!(text.lines().any(|l| l.starts_with("M   ################################")));
    assert!(text.lines().any(|l| l.starts_with("P03 ") && l.contains('.')), "{text}");
    assert!(text.contains("Naive: 4 peers, 32 chunks"), "{text}");
}

#[test]
fn bad_arguments_say_what_to_fix() {
    let out = simulate(&["--slow", "9"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exceed --peers"));
}
