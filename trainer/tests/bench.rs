//! `bench_train` splits a real step's time into its parts.

mod common;

use afx_trainer::bench::bench_train;
use afx_trainer::train::TrainConfig;

#[test]
fn bench_train_times_every_part_of_a_real_step() {
    let config = TrainConfig { batch: 4, clip_seconds: 0.5, val_items: 2, ..TrainConfig::default() };
    let mut pool = common::pool("zam_comp");
    let bench = bench_train(
        &config,
        &common::chain_info("zam_comp"),
        &mut pool,
        &common::train_set(),
        2,
        &candle_core::Device::Cpu,
    )
    .unwrap();
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
