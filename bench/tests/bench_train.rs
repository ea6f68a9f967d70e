//! `bench_train` splits a real step's time into its parts.

use std::path::PathBuf;

use afx_bench::train::bench_train;
use afx_core::Audio;
use afx_host::{Chain, Config, Host};
use afx_spsa::{Isolation, Pool, PoolConfig, WorkerSpec};
use afx_trainer::ChainInfo;
use afx_trainer::resample::to_rate;
use afx_trainer::train::TrainConfig;

fn plugins_toml() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins.toml"))
}

/// Two thread workers on the repository's zam chain (process isolation is the CLI's job and tested in `spsa`).
fn pool(name: &str) -> Pool {
    let mut config = PoolConfig::new(WorkerSpec::new(Some(plugins_toml()), name), Isolation::Thread);
    config.workers = 2;
    Pool::new(config).unwrap()
}

fn chain_info(name: &str) -> ChainInfo {
    let config = Config::load(&plugins_toml()).unwrap();
    ChainInfo::from_chain(Chain::resolve(&Host::new(), Some(&config), name, None).unwrap().layout())
}

/// Real recordings (sonic-pi-samples, CC0), mono at the training rate.
fn train_set() -> Vec<Audio> {
    ["loop_amen.flac", "loop_breakbeat.flac", "loop_compus.flac", "guit_em9.flac", "loop_mika.flac"]
        .iter()
        .map(|n| to_rate(&afx_testkit::recording(n), 22_050).unwrap())
        .collect()
}

#[test]
fn bench_train_times_every_part_of_a_real_step() {
    let config = TrainConfig { batch: 4, clip_seconds: 0.5, val_items: 2, ..TrainConfig::default() };
    let mut pool = pool("zam_comp");
    let bench =
        bench_train(&config, &chain_info("zam_comp"), &mut pool, &train_set(), 2, &candle_core::Device::Cpu).unwrap();
    let m = bench.mean;
    eprintln!("{bench:?}");
    for (part, s) in [
        ("data", m.data_s),
        ("encoder", m.encoder_forward_s),
        ("render", m.render_s),
        ("loss", m.loss_s),
        ("spsa", m.spsa_s),
        ("backward", m.backward_s),
    ] {
        assert!(s > 0.0 && s < m.total_s, "{part}: {s} s of {} s", m.total_s);
    }
}
