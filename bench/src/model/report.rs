//! The report of `afx bench model` as text: one row per part, afx at 1 and 2 threads, PyTorch at 2, afx/PyTorch.

use super::run::{ModelBench, SideFigures};

impl ModelBench {
    /// The report as a table: one row per part, afx at 1 and 2 threads, PyTorch at 2, afx/PyTorch.
    pub fn table(&self) -> String {
        let (a1, a2) = (&self.afx.threads_1, &self.afx.threads_2);
        let t2 = self.torch.as_ref().map(|t| &t.threads_2);
        let ms = |v: f64| format!("{:.1} ms", v * 1e3);
        let mib = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.0} MiB"));
        let ratio = |a: Option<f64>, t: Option<f64>| match a.zip(t) {
            Some((a, t)) if t > 0.0 => format!("{:.2}x", a / t),
            _ => "–".into(),
        };
        let t = &self.spec;
        let mut text = format!(
            "afx bench model: the network side of `afx train`'s SPSA step (batch {}, {} frames at {} Hz, {} \
             parameters: {})\nand of `afx train-proxy`'s step (batch {} x {} frames after {} of context, TCN {} \
             channels), afx (candle, CPU) vs PyTorch{}\ninputs: {}\nmedians of {} steps after one warm-up; each \
             side and thread count in a process of its own\n\n",
            t.train.batch,
            t.train.frames,
            t.train.sample_rate,
            self.num_params,
            self.params_from,
            t.tcn.batch,
            t.tcn.patch,
            t.tcn.context,
            t.tcn.channels,
            self.torch_version.as_ref().map_or(String::new(), |v| format!(" {v} (CPU)")),
            self.inputs,
            self.steps,
        );
        text.push_str(&format!(
            "{:<38} {:>12} {:>12} {:>14} {:>10}\n",
            "part", "afx 1 thread", "afx 2 thr.", "torch 2 thr.", "afx/torch"
        ));
        type Part = fn(&SideFigures) -> f64;
        let rows: [(&str, Part); 6] = [
            ("features (log-STFT, input + reference)", |s| s.features_s),
            ("encoder + controller forward", |s| s.encoder_forward_s),
            ("MRSTFT loss + dL/dy", |s| s.loss_s),
            ("backward (θ·g) + clip + AdamW", |s| s.backward_s),
            ("= training step, network parts", |s| s.train_step_s),
            ("proxy TCN step (train-proxy)", |s| s.tcn_step_s),
        ];
        for (what, get) in rows {
            text.push_str(&format!(
                "{what:<38} {:>12} {:>12} {:>14} {:>10}\n",
                ms(get(a1)),
                ms(get(a2)),
                t2.map_or("–".into(), |t| ms(get(t))),
                ratio(Some(get(a2)), t2.map(get))
            ));
        }
        for (what, a1v, a2v, tv) in [
            ("working set, training step", a1.peak_mem_mib, a2.peak_mem_mib, t2.and_then(|t| t.peak_mem_mib)),
            ("working set, TCN step", a1.tcn_peak_mem_mib, a2.tcn_peak_mem_mib, t2.and_then(|t| t.tcn_peak_mem_mib)),
            ("VmHWM (whole process), training step", a1.vm_hwm_mib, a2.vm_hwm_mib, t2.and_then(|t| t.vm_hwm_mib)),
            (
                "VmHWM (whole process), TCN step",
                a1.tcn_vm_hwm_mib,
                a2.tcn_vm_hwm_mib,
                t2.and_then(|t| t.tcn_vm_hwm_mib),
            ),
        ] {
            text.push_str(&format!(
                "{what:<38} {:>12} {:>12} {:>14} {:>10}\n",
                mib(a1v),
                mib(a2v),
                mib(tv),
                ratio(a2v, tv)
            ));
        }
        let x = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.2}x"));
        text.push_str(&format!(
            "\n2 threads over 1: afx training step {:.2}x, TCN step {:.2}x; PyTorch {}, {}\n",
            self.speedup_2_threads,
            self.tcn_speedup_2_threads,
            x(self.torch_speedup_2_threads),
            x(self.torch_tcn_speedup_2_threads)
        ));
        match (&self.torch_skipped, &self.check) {
            (Some(reason), _) => text.push_str(&format!("PyTorch columns skipped: {reason}\n")),
            (None, Some(c)) => {
                let e = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.1e}"));
                text.push_str(&format!(
                    "PyTorch at afx's weights vs afx (relative unless |Δ|): θ max |Δ| {}, loss {}, dL/dy {} (each \
                     side's f32 vs float64: afx {}, PyTorch {}), TCN output {}, TCN loss {}\n",
                    e(c.theta_max_abs_diff),
                    e(c.loss_max_rel_diff),
                    e(c.grad_y_rel_diff),
                    e(c.grad_y_f64_error_afx),
                    e(c.grad_y_f64_error_torch),
                    e(c.tcn_output_max_rel_diff),
                    e(c.tcn_loss_rel_diff)
                ));
            }
            (None, None) => {}
        }
        text
    }
}
