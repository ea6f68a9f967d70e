//! Shared by the trainer's tests: real recordings at the training rate, a thread pool on a real zam chain.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use afx_core::Audio;
use afx_host::{Chain, Config, Host};
use afx_spsa::{Isolation, Pool, PoolConfig, WorkerSpec};
use afx_trainer::ChainInfo;
use afx_trainer::resample::to_rate;
use afx_trainer::train::Data;

pub const RATE: u32 = 22_050;

pub fn plugins_toml() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins.toml"))
}

pub fn chain(name: &str) -> Chain {
    let config = Config::load(&plugins_toml()).unwrap();
    Chain::resolve(&Host::new(), Some(&config), name, None).unwrap()
}

pub fn chain_info(name: &str) -> ChainInfo {
    ChainInfo::from_chain(chain(name).layout())
}

/// Two thread workers (zam plugins are trusted; process isolation is the CLI's job and tested in `spsa`).
pub fn pool(name: &str) -> Pool {
    let mut config = PoolConfig::new(WorkerSpec::new(Some(plugins_toml()), name), Isolation::Thread);
    config.workers = 2;
    Pool::new(config).unwrap()
}

/// Real recordings (sonic-pi-samples, CC0), mono at the training rate.
pub fn recordings(names: &[&str]) -> Vec<Audio> {
    names.iter().map(|n| to_rate(&afx_testkit::recording(n), RATE).unwrap()).collect()
}

pub fn train_set() -> &'static Vec<Audio> {
    static SET: OnceLock<Vec<Audio>> = OnceLock::new();
    SET.get_or_init(|| {
        recordings(&["loop_amen.flac", "loop_breakbeat.flac", "loop_compus.flac", "guit_em9.flac", "loop_mika.flac"])
    })
}

pub fn validation_set() -> &'static Vec<Audio> {
    static SET: OnceLock<Vec<Audio>> = OnceLock::new();
    SET.get_or_init(|| recordings(&["loop_tabla.flac", "guit_e_fifths.flac", "loop_safari.flac"]))
}

/// The training and validation sets as a run takes them.
pub fn data() -> Data<'static> {
    Data { train: train_set(), validation: validation_set() }
}
