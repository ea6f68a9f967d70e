//! The SPSA pool through the CLI: `afx bench spsa` runs `afx worker` processes and reports its ratios.

mod common;

use common::*;

#[test]
fn bench_spsa_json_reports_every_ratio_for_every_chain() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(afx(
        dir.path(),
        &[
            "bench",
            "spsa",
            "--chain",
            ZAM_COMP,
            "--chain",
            ZAM_EQ2,
            "--seconds",
            "0.05",
            "--batch",
            "4",
            "--rounds",
            "1",
            "--json",
        ],
    ));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    for field in ["isolated_over_inprocess", "inprocess_over_direct", "speedup_2_workers", "renders_per_s"] {
        let x = v[field].as_f64().unwrap_or_else(|| panic!("no {field} in {v}"));
        assert!(x.is_finite() && x > 0.0, "{field} = {x}");
    }
    let chains = v["chains"].as_array().unwrap();
    assert_eq!(chains.len(), 2);
    assert_eq!(chains[1]["chain"], ZAM_EQ2);
    let r = &chains[0];
    let ratio = r["isolated_s"].as_f64().unwrap() / r["inprocess_s"].as_f64().unwrap();
    assert!((ratio - r["isolated_over_inprocess"].as_f64().unwrap()).abs() < 1e-9);
}

#[test]
fn bench_spsa_names_a_chain_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let out = afx(dir.path(), &["bench", "spsa", "--chain", "urn:zamaudio:ZamCmop", "--rounds", "1"]);
    fails_with(&out, &["urn:zamaudio:ZamCmop", "did you mean"]);
}
