//! The loss settings moved into their own type (`afx_nn::loss::LossConfig`, flattened into `SpsaConfig`) without
//! changing a run's files: a config.json written before (afx at 2442c95) loads, resumes with the same loss, and is
//! written back byte for byte.

use afx_nn::loss::LossConfig;
use afx_trainer::train::TrainConfig;

/// The `config` of a run's config.json as afx 2442c95 wrote it (`afx train --steps 20 --batch 4 --seed 7 ...`).
const OLD_CONFIG: &str = r#"{
  "steps": 20,
  "minutes": null,
  "batch": 4,
  "lr": 0.001,
  "lr_final": 0.0001,
  "weight_decay": 0.0,
  "grad_clip": 1.0,
  "seed": 7,
  "clip_seconds": 0.5,
  "sample_rate": 22050,
  "corruption": "none",
  "val_every": 10,
  "val_items": 16,
  "checkpoint_every": 10,
  "grad": "spsa",
  "proxy": null,
  "spsa": {
    "epsilon": 0.01,
    "perturbations": 2,
    "fft_sizes": [
      256,
      512,
      1024
    ],
    "time_l1_weight": 0.0
  },
  "fd_step": 0.01,
  "model": {
    "n_fft": 512,
    "hop": 256,
    "channels": [
      8,
      16,
      32,
      32
    ],
    "groups": 4,
    "hidden": 64
  }
}"#;

#[test]
fn a_config_written_before_the_loss_had_its_own_type_loads_and_is_written_back_unchanged() {
    let config: TrainConfig = serde_json::from_str(OLD_CONFIG).unwrap();
    assert_eq!(config.spsa.loss, LossConfig { fft_sizes: vec![256, 512, 1024], time_l1_weight: 0.0 });
    assert_eq!(config.spsa.loss, LossConfig::default());
    assert_eq!((config.spsa.epsilon, config.spsa.perturbations), (0.01, 2));
    assert_eq!(serde_json::to_string_pretty(&config).unwrap(), OLD_CONFIG);
}

#[test]
fn an_unknown_setting_in_the_spsa_object_is_still_refused() {
    let misspelt = OLD_CONFIG.replace(r#""time_l1_weight""#, r#""time_l1_wieght""#);
    let e = serde_json::from_str::<TrainConfig>(&misspelt).unwrap_err().to_string();
    assert!(e.contains("time_l1_wieght") || e.contains("time_l1_weight"), "{e}");
    let extra = OLD_CONFIG.replace(r#""perturbations": 2,"#, r#""perturbations": 2, "epsilon_typo": 1,"#);
    let e = serde_json::from_str::<TrainConfig>(&extra).unwrap_err().to_string();
    assert!(e.contains("epsilon_typo"), "{e}");
}
