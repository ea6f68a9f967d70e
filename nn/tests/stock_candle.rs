//! Canaries for candle 0.11.1 bugs afx-nn works around. Each test PASSES WHILE THE BUG EXISTS: when one fails after a
//! candle upgrade, the upstream fix has landed and the workaround can be reconsidered (then flip the assertion).

use afx_nn::gradcheck::{GradCheck, project, pseudo_random};
use candle_core::{Device, Var};

/// DEMONSTRATES A CANDLE BUG: stock `Tensor::conv1d`'s WEIGHT gradient is wrong on CPU for batch 2 (its backward
/// runs conv1d on a non-contiguous kernel). afx-nn's `conv::conv1d` is right on the same case (`tests/gradients.rs`).
#[test]
fn stock_candle_conv1d_weight_gradient_is_wrong_for_batch_2() {
    let x = Var::from_tensor(&pseudo_random((2, 3, 20), 1, &Device::Cpu).unwrap()).unwrap();
    let w = Var::from_tensor(&pseudo_random((4, 3, 3), 2, &Device::Cpu).unwrap()).unwrap();
    let f = || project(&x.as_tensor().conv1d(w.as_tensor(), 1, 1, 2, 1)?, 3);
    let reports = GradCheck::default().run(f, &[("w", &w)]).unwrap();
    println!("stock candle conv1d, batch 2: {}", reports[0]);
    assert!(
        reports[0].rel_err > 1e-2,
        "stock candle conv1d's weight gradient is now RIGHT for batch 2 (rel err {:.2e}): the upstream bug is fixed",
        reports[0].rel_err
    );
    // With batch 1 the same stock gradient is right: the bug is the batch dimension.
    let x1 = Var::from_tensor(&x.as_tensor().narrow(0, 0, 1).unwrap()).unwrap();
    let f1 = || project(&x1.as_tensor().conv1d(w.as_tensor(), 1, 1, 2, 1)?, 3);
    let batch1 = GradCheck::default().run(f1, &[("w", &w)]).unwrap();
    println!("stock candle conv1d, batch 1: {}", batch1[0]);
    assert!(batch1[0].rel_err < 1e-6, "{}", batch1[0]);
}
