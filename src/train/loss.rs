//! Cross-entropy with PyTorch's semantics for class weights and label smoothing
//! (`F.cross_entropy(logits, y, weight=w, label_smoothing=eps)`, reduction "mean"):
//!
//! ```text
//! nll_i    = -w[y_i] * log p_i[y_i]
//! smooth_i = -sum_k w[k] * log p_i[k]
//! loss     = ((1 - eps) * sum_i nll_i + eps / K * sum_i smooth_i) / sum_i w[y_i]
//! ```
//! Without weights (all 1) the denominator is the batch size: the plain mean.

use candle_core::{DType, Result, Tensor};

/// `logits` `[B, K]`, `labels` in `0..K`, `class_weights` of length K.
pub fn cross_entropy(
    logits: &Tensor,
    labels: &[u32],
    class_weights: &[f32],
    smoothing: f64,
) -> Result<Tensor> {
    let (b, k) = logits.dims2()?;
    if labels.len() != b || class_weights.len() != k {
        candle_core::bail!(
            "cross_entropy: {} labels and {} class weights for logits {:?}",
            labels.len(),
            class_weights.len(),
            logits.dims()
        )
    }
    let dev = logits.device();
    let mut onehot_w = vec![0f32; b * k];
    let mut weight_sum = 0f64;
    for (i, &y) in labels.iter().enumerate() {
        let y = y as usize;
        if y >= k {
            candle_core::bail!("cross_entropy: label {y} out of range for {k} classes")
        }
        onehot_w[i * k + y] = class_weights[y];
        weight_sum += class_weights[y] as f64;
    }
    if weight_sum <= 0.0 {
        candle_core::bail!("cross_entropy: the batch's class weights sum to {weight_sum}")
    }
    let logp = candle_nn::ops::log_softmax(&logits.to_dtype(DType::F32)?, 1)?;
    let onehot_w = Tensor::from_vec(onehot_w, (b, k), dev)?;
    let nll = (logp.mul(&onehot_w)?.sum_all()? * -(1.0 - smoothing))?;
    let total = if smoothing != 0.0 {
        let w = Tensor::from_slice(class_weights, (1, k), dev)?;
        let smooth = (logp.broadcast_mul(&w)?.sum_all()? * -(smoothing / k as f64))?;
        (nll + smooth)?
    } else {
        nll
    };
    total / weight_sum
}

/// How many rows of `logits` have their largest value at the label (first maximum wins).
pub fn correct(logits: &Tensor, labels: &[u32]) -> Result<usize> {
    let pred = logits.argmax(1)?.to_dtype(DType::U32)?.to_vec1::<u32>()?;
    Ok(pred.iter().zip(labels).filter(|(p, y)| p == y).count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn logits() -> Tensor {
        // Row 0: log-probs ln(1/2), ln(1/4), ln(1/4); row 1: uniform over 3.
        let r0 = [2f32.ln(), 1f32.ln(), 1f32.ln()];
        Tensor::new(&[r0, [0f32, 0.0, 0.0]], &Device::Cpu).unwrap()
    }

    fn value(labels: &[u32], w: &[f32], eps: f64) -> f64 {
        cross_entropy(&logits(), labels, w, eps)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64
    }

    #[test]
    fn plain_weighted_and_smoothed_by_hand() {
        let (l2, l3, l4) = (2f64.ln(), 3f64.ln(), 4f64.ln());
        // plain mean: (ln 2 + ln 3) / 2
        assert!((value(&[0, 2], &[1.0; 3], 0.0) - (l2 + l3) / 2.0).abs() < 1e-6);
        // weights w = [1, 2, 3], labels 0, 2: (1*ln2 + 3*ln3) / (1 + 3)
        let w = [1.0, 2.0, 3.0];
        assert!((value(&[0, 2], &w, 0.0) - (l2 + 3.0 * l3) / 4.0).abs() < 1e-6);
        // smoothing 0.3 with weights: smooth_0 = 1*ln2 + 2*ln4 + 3*ln4, smooth_1 = 6*ln3
        let smooth = (l2 + 5.0 * l4) + 6.0 * l3;
        let want = (0.7 * (l2 + 3.0 * l3) + 0.1 * smooth) / 4.0;
        assert!((value(&[0, 2], &w, 0.3) - want).abs() < 1e-6);
        assert!(cross_entropy(&logits(), &[0, 3], &w, 0.0).is_err());
        let l = Tensor::new(&[[1f32, 3.0, 2.0], [5.0, 0.0, 1.0]], &Device::Cpu).unwrap();
        assert_eq!(correct(&l, &[1, 2]).unwrap(), 1);
        assert_eq!(correct(&l, &[1, 0]).unwrap(), 2);
    }
}
