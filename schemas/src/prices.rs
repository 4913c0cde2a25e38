//! The price table: what a model call costs, from its token counts.
//!
//! `[prices."model"]` in the config gives, per million tokens, the price of
//! input tokens not read from a cache, of cached input tokens and of output
//! tokens. [`Prices::apply`] fills each span's `cost` column at ingest; a model
//! the table does not name keeps the cost it was sent with, or none (null,
//! never zero: an unknown price is not a free call).

use std::collections::HashMap;

use serde::Deserialize;

use crate::span::Span;

/// One model's prices, per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Input tokens not read from a cache.
    pub input_per_mtok: f64,
    /// Input tokens read from a cache; the input price when not given.
    pub cached_input_per_mtok: Option<f64>,
    pub output_per_mtok: f64,
}

/// Prices by model name (`gen_ai_model`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Prices(HashMap<String, Price>);

impl Prices {
    /// A table of the given models' prices.
    pub fn new(prices: HashMap<String, Price>) -> Self {
        Self(prices)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Refuses negative or non-finite prices, naming the model.
    pub fn validate(&self) -> Result<(), String> {
        for (model, p) in &self.0 {
            let all = [
                p.input_per_mtok,
                p.cached_input_per_mtok.unwrap_or(0.0),
                p.output_per_mtok,
            ];
            if all.iter().any(|v| !v.is_finite() || *v < 0.0) {
                return Err(format!(
                    "prices.\"{model}\": prices are per million tokens, finite and not negative"
                ));
            }
        }
        Ok(())
    }

    /// What a call of `model` cost, or `None` when the table has no price for
    /// it or the call reported no tokens. Cached tokens beyond the input
    /// count are taken as all of the input.
    pub fn cost(
        &self,
        model: Option<&str>,
        input: Option<i64>,
        cached: Option<i64>,
        output: Option<i64>,
    ) -> Option<f64> {
        let price = self.0.get(model?)?;
        if input.is_none() && output.is_none() {
            return None;
        }
        let input = input.unwrap_or(0).max(0) as f64;
        let cached = (cached.unwrap_or(0).max(0) as f64).min(input);
        let output = output.unwrap_or(0).max(0) as f64;
        let cached_price = price.cached_input_per_mtok.unwrap_or(price.input_per_mtok);
        Some(
            ((input - cached) * price.input_per_mtok
                + cached * cached_price
                + output * price.output_per_mtok)
                / 1e6,
        )
    }

    /// Fills `cost` on every span whose model has a price.
    pub fn apply(&self, spans: &mut [Span]) {
        if self.0.is_empty() {
            return;
        }
        for span in spans {
            let ai = &span.ai;
            if let Some(cost) = self.cost(
                ai.gen_ai_model.as_deref(),
                ai.input_tokens,
                ai.cached_input_tokens,
                ai.output_tokens,
            ) {
                span.ai.cost = Some(cost);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Prices {
        toml_like(1.0, Some(0.25), 4.0)
    }

    fn toml_like(input: f64, cached: Option<f64>, output: f64) -> Prices {
        Prices::new(HashMap::from([(
            "llama".to_owned(),
            Price {
                input_per_mtok: input,
                cached_input_per_mtok: cached,
                output_per_mtok: output,
            },
        )]))
    }

    #[test]
    fn cost_splits_cached_input_and_unknown_models_are_null() {
        let p = table();
        // 1M input of which 400k cached, 100k output.
        let c = p
            .cost(Some("llama"), Some(1_000_000), Some(400_000), Some(100_000))
            .unwrap();
        assert!((c - (0.6 + 0.1 + 0.4)).abs() < 1e-12, "{c}");
        assert_eq!(p.cost(Some("gpt"), Some(10), None, Some(10)), None);
        assert_eq!(p.cost(None, Some(10), None, Some(10)), None);
        assert_eq!(p.cost(Some("llama"), None, None, None), None);
        // No cached price: cached input costs the input price.
        let plain = toml_like(2.0, None, 0.0);
        let c = plain
            .cost(Some("llama"), Some(500_000), Some(500_000), None)
            .unwrap();
        assert!((c - 1.0).abs() < 1e-12, "{c}");
        assert!(toml_like(-1.0, None, 0.0).validate().is_err());
        assert!(table().validate().is_ok());
    }
}
