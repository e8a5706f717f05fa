//! The whole parse pipeline on arbitrary bytes: AST, dump, typed stages,
//! build plan (with and without a target) and error rendering must never
//! panic, and every error must point inside the text.
#![no_main]

use kiln_parser::{ast, instructions, plan};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let df = match ast::parse_bytes("Dockerfile", data) {
        Ok(df) => df,
        Err(e) => {
            let _ = e.render();
            return;
        }
    };
    let _ = df.dump();
    let _ = df.check_options();
    if let Err(e) = instructions::parse_stages(&df) {
        assert!(e.span.line >= 1 && e.span.column >= 1);
        let _ = e.render();
        return;
    }
    let options = plan::PlanOptions::default();
    match plan::plan(&df, &options) {
        Ok(p) => {
            let _ = serde_json_free_summary(&p);
            // Re-plan for each named stage as --target.
            for stage in p.stages.iter().filter_map(|s| s.name.clone()) {
                let options = plan::PlanOptions {
                    target: Some(stage),
                    ..plan::PlanOptions::default()
                };
                let _ = plan::plan(&df, &options).map_err(|e| e.render());
            }
        }
        Err(e) => {
            assert!(e.span.line >= 1 && e.span.column >= 1);
            let _ = e.render();
        }
    }
});

/// Touches every step so nothing is left unevaluated.
fn serde_json_free_summary(p: &plan::Plan) -> usize {
    p.stages.iter().map(|s| s.steps.len() + s.dependencies.len()).sum()
}
