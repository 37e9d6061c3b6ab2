//! `dkp info`: what adapters wgpu sees and what each can do.

use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct InfoArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(opts: &dkp::ContextOptions, args: &InfoArgs) -> Result<()> {
    if let Some(b) = &opts.backend {
        dkp::gpu::context::check_backend_list(b)?;
    }
    let adapters = dkp::gpu::enumerate(opts.backend.as_deref());
    if adapters.is_empty() {
        anyhow::bail!(
            "no GPU adapter found: install a Vulkan driver (without a GPU: Mesa's lavapipe, Debian package mesa-vulkan-drivers) or choose another --backend"
        );
    }
    let summaries: Vec<_> = adapters
        .iter()
        .map(|a| dkp::gpu::AdapterSummary::from_adapter(&a.get_info(), a.features(), &a.limits()))
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summaries)?);
        return Ok(());
    }
    for (i, s) in summaries.iter().enumerate() {
        println!("[{i}] {}", s.name);
        println!(
            "    backend {}  type {}{}",
            s.backend,
            s.device_type,
            if s.software { " (software: slow)" } else { "" }
        );
        println!("    driver  {} {}", s.driver, s.driver_info);
        println!(
            "    limits  max storage binding {} MiB, max buffer {} MiB, {} workgroups/dim, {} invocations/workgroup, {} KiB workgroup memory",
            s.max_storage_binding >> 20,
            s.max_buffer >> 20,
            s.max_workgroups_per_dim,
            s.max_invocations_per_workgroup,
            s.max_workgroup_storage >> 10
        );
        let yn = |b: bool| if b { "yes" } else { "no" };
        println!(
            "    features TIMESTAMP_QUERY {}  SHADER_F16 {}  SUBGROUP {}",
            yn(s.timestamp_query),
            yn(s.shader_f16),
            yn(s.subgroup)
        );
    }
    Ok(())
}
