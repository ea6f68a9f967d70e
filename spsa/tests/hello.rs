//! A worker's hello describes its chain: the caller learns every stage, plugin, parameter spec and latency from
//! it, exactly as loading the chain itself would have told it, without running any plugin code.

use std::path::PathBuf;

use afx_host::{Chain, Config, Host, RenderSettings};
use afx_spsa::{Isolation, Pool, PoolConfig, WorkerCommand, WorkerSpec};

fn plugins_toml() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins.toml"))
}

#[test]
fn the_pool_learns_the_chain_from_its_worker_exactly_as_loading_it_here_would() {
    // eq_comp: two stages, narrowed ranges, fixed values; x42_limiter: a plugin that reports latency.
    for name in ["eq_comp", "x42_limiter"] {
        let spec = WorkerSpec::new(Some(plugins_toml()), name);
        let command = WorkerCommand::new(env!("CARGO_BIN_EXE_afx-worker"));
        let config = PoolConfig { workers: 1, ..PoolConfig::new(spec, Isolation::Process(command)) };
        let pool = Pool::new(config).unwrap();

        let mut here = Chain::resolve(&Host::new(), Some(&Config::load(&plugins_toml()).unwrap()), name, None).unwrap();
        assert!(here.stages().iter().all(|s| s.latency().is_none()), "{name}: latency before any render");
        here.probe(&RenderSettings::default()).unwrap();
        assert_eq!(pool.chain(), here.layout(), "{name}");
        assert_eq!(pool.num_params(), here.num_params());
    }
    let spec = WorkerSpec::new(Some(plugins_toml()), "x42_limiter");
    let command = WorkerCommand::new(env!("CARGO_BIN_EXE_afx-worker"));
    let pool = Pool::new(PoolConfig { workers: 1, ..PoolConfig::new(spec, Isolation::Process(command)) }).unwrap();
    let latency = pool.chain().stages()[0].latency();
    assert!(latency.is_some_and(|frames| frames > 0), "x42 dpl reports look-ahead latency, got {latency:?}");
}
