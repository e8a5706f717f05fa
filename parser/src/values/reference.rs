//! Docker image references; the implementation lives in the
//! `kiln-reference` crate so that the store can share it without depending
//! on the parser.

pub use kiln_reference::*;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::XorShift;

    #[test]
    fn never_panics_on_garbage() {
        let alphabet: Vec<char> = "abcAB09._-/:@[]%sha256fFé🐳 ".chars().collect();
        let mut rng = XorShift::new(0x0BAD_5EED);
        for _ in 0..5_000 {
            let s = rng.string(&alphabet, 40);
            if let Ok(named) = parse_normalized_named(&s) {
                let text = named.to_string();
                assert_eq!(
                    parse_normalized_named(&text).as_ref(),
                    Ok(&named),
                    "input {s:?}"
                );
                let _ = named.familiar_string();
            }
            let _ = parse(&s);
            let _ = Digest::parse(&s);
        }
        for huge in [
            "a".repeat(100_000),
            "a/".repeat(50_000),
            format!("a@sha256:{}", "f".repeat(100_000)),
        ] {
            assert!(parse_normalized_named(&huge).is_err());
        }
    }
}
