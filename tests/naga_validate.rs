//! CPU-only: every shipped kernel specialization parses and validates with naga (no adapter
//! needed), with the capabilities we request at run time.

use dkp::kernels::shipped_keys;
use wgpu::naga;

#[test]
fn every_shipped_specialization_validates() {
    let keys = shipped_keys();
    assert!(!keys.is_empty());
    let mut failures = Vec::new();
    for key in &keys {
        let src = match key.render() {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{}: {e}", key.label()));
                continue;
            }
        };
        let module = match naga::front::wgsl::parse_str(&src) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!(
                    "{}: parse: {}",
                    key.label(),
                    e.emit_to_string(&src)
                ));
                continue;
            }
        };
        let caps = naga::valid::Capabilities::SHADER_FLOAT16 | naga::valid::Capabilities::SUBGROUP;
        let mut v = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps);
        if let Err(e) = v.validate(&module) {
            failures.push(format!(
                "{}: validate: {}",
                key.label(),
                e.emit_to_string(&src)
            ));
            continue;
        }
        if !module.entry_points.iter().any(|ep| ep.name == key.entry) {
            failures.push(format!("{}: no entry point `{}`", key.label(), key.entry));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} specializations failed:\n{}",
        failures.len(),
        keys.len(),
        failures.join("\n")
    );
}
