//! "Did you mean": the nearest valid names to a misspelt one.

/// Up to `count` candidates closest to `wanted` (case-insensitive), best first, leaving out poor matches.
pub fn nearest<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>, count: usize) -> Vec<String> {
    let wanted = wanted.to_lowercase();
    let mut scored: Vec<(f64, &str)> = candidates
        .into_iter()
        .map(|c| {
            let lower = c.to_lowercase();
            let mut score = strsim::jaro_winkler(&wanted, &lower);
            if lower.contains(&wanted) || wanted.contains(&lower) {
                score = score.max(0.9);
            }
            (score, c)
        })
        .filter(|(score, _)| *score >= 0.6)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(count).map(|(_, c)| c.to_string()).collect()
}

/// "; did you mean a, b?" or "" when there is nothing close.
pub fn did_you_mean(suggestions: &[String]) -> String {
    if suggestions.is_empty() { String::new() } else { format!("; did you mean {}?", suggestions.join(", ")) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn nearest_finds_close_names_first() {
        let names = ["thr", "rat", "att", "rel", "kn", "mak"];
        assert_eq!(super::nearest("thres", names, 2)[0], "thr");
        assert!(super::nearest("zzzzzzzz", names, 3).is_empty());
    }
}
