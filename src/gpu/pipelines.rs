//! Pipeline cache. A `KernelKey` names a shader family, an entry point and every
//! specialization constant; the same key renders the WGSL header and indexes the cache, so
//! the two can never drift apart.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// A specialization value. Floats are stored as bits so keys stay `Eq + Hash`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Const {
    U32(u32),
    I32(i32),
    F32Bits(u32),
    Bool(bool),
}

impl Const {
    pub fn f32(v: f32) -> Self {
        Const::F32Bits(v.to_bits())
    }
    fn wgsl(&self) -> String {
        match *self {
            Const::U32(v) => format!("{v}u"),
            Const::I32(v) => format!("{v}i"),
            Const::F32Bits(b) => {
                let v = f32::from_bits(b);
                if v.is_finite() {
                    format!("{v:?}f")
                } else {
                    // WGSL has no inf literal: a const expression that overflows is rejected, so
                    // use the largest finite value instead (callers treat it as "unbounded").
                    if v > 0.0 {
                        "3.4028235e38f".into()
                    } else {
                        "-3.4028235e38f".into()
                    }
                }
            }
            Const::Bool(v) => format!("{v}"),
        }
    }
}

/// Helpers shared by every shader (`wg_index`, `mulhi`, `udiv`), prepended by
/// [`KernelKey::render`].
pub const PRELUDE: &str = include_str!("../../shaders/prelude.wgsl");

/// One WGSL shader family, declared by the launcher module that owns it (so no registry has
/// to list the families): its name (in keys and profiles) and its embedded source text.
#[derive(Debug)]
pub struct Shader {
    pub name: &'static str,
    pub source: &'static str,
}

// Keys are hashed on every dispatch: compare and hash shaders by name, never by their text.
/// `shader!("norm")`: the family `norm` with the text of `shaders/norm.wgsl` embedded.
macro_rules! shader {
    ($name:literal) => {
        $crate::gpu::Shader::new(
            $name,
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/shaders/",
                $name,
                ".wgsl"
            )),
        )
    };
}
pub(crate) use shader;

impl Shader {
    pub const fn new(name: &'static str, source: &'static str) -> Self {
        Self { name, source }
    }
}

impl PartialEq for Shader {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
impl Eq for Shader {}
impl std::hash::Hash for Shader {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.name.hash(h)
    }
}

/// Everything that changes the code of a kernel. Shapes never go here: they go in uniforms.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KernelKey {
    pub shader: &'static Shader,
    pub entry: &'static str,
    pub consts: Vec<(&'static str, Const)>,
    /// Render `alias` lines of the spec block with f16 instead of f32 and enable the extension.
    pub f16: bool,
    /// With `f16`: rewrite only the aliases named here (empty = every alias of the spec block).
    pub f16_aliases: Vec<&'static str>,
}

impl KernelKey {
    pub fn new(shader: &'static Shader, entry: &'static str) -> Self {
        Self {
            shader,
            entry,
            consts: Vec::new(),
            f16: false,
            f16_aliases: Vec::new(),
        }
    }
    /// Enable f16 and render the named `alias X = f32;` lines of the spec block as f16 (the
    /// other aliases stay f32). An empty list is a no-op (the f32 key is returned unchanged).
    pub fn half(mut self, aliases: &[&'static str]) -> Self {
        if !aliases.is_empty() {
            self.f16 = true;
            self.f16_aliases = aliases.to_vec();
        }
        self
    }

    /// [`Self::half`] for tensors of dtype `d`: the named aliases become f16 only when `d` is
    /// f16 (the f32 key is returned unchanged otherwise).
    pub fn half_for(self, d: crate::tensor::DType, aliases: &[&'static str]) -> Self {
        if d == crate::tensor::DType::F16 {
            self.half(aliases)
        } else {
            self
        }
    }
    pub fn with(mut self, name: &'static str, v: Const) -> Self {
        self.consts.push((name, v));
        self
    }
    pub fn u32(self, name: &'static str, v: u32) -> Self {
        self.with(name, Const::U32(v))
    }
    pub fn bool(self, name: &'static str, v: bool) -> Self {
        self.with(name, Const::Bool(v))
    }

    /// Human-readable label used by the profiler: `family/entry[K=V,...]`.
    pub fn label(&self) -> String {
        let mut s = format!("{}/{}", self.shader.name, self.entry);
        if !self.consts.is_empty() || self.f16 {
            s.push('[');
            let mut first = true;
            for (n, v) in &self.consts {
                if !first {
                    s.push(',');
                }
                first = false;
                let _ = write!(s, "{n}={}", v.wgsl().trim_end_matches(['u', 'i', 'f']));
            }
            if self.f16 {
                if !first {
                    s.push(',');
                }
                s.push_str("f16");
                if !self.f16_aliases.is_empty() {
                    let _ = write!(s, ":{}", self.f16_aliases.join("+"));
                }
            }
            s.push(']');
        }
        s
    }

    /// The full WGSL source of this specialization: the family's file with its spec block
    /// (between `// spec:begin` and `// spec:end`) rewritten from this key.
    pub fn render(&self) -> Result<String> {
        render_spec(self.shader.source, self).map_err(|msg| Error::Shader {
            kernel: self.label(),
            msg,
        })
    }
}

fn render_spec(body: &str, key: &KernelKey) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(body.len() + 128);
    if key.f16 {
        out.push_str("enable f16;\n");
    }
    out.push_str(PRELUDE);
    let mut used = vec![false; key.consts.len()];
    let mut in_spec = false;
    let mut saw_spec = false;
    for line in body.lines() {
        let t = line.trim();
        if t == "// spec:begin" {
            in_spec = true;
            saw_spec = true;
        } else if t == "// spec:end" {
            in_spec = false;
        } else if in_spec {
            if let Some(rest) = t.strip_prefix("const ") {
                // const NAME: TYPE = VALUE;
                let (name, after) = rest.split_once(':').ok_or("bad const line")?;
                let name = name.trim();
                let ty = after.split_once('=').ok_or("bad const line")?.0.trim();
                if let Some(i) = key.consts.iter().position(|(n, _)| *n == name) {
                    used[i] = true;
                    let _ = writeln!(out, "const {name}: {ty} = {};", key.consts[i].1.wgsl());
                    continue;
                }
            } else if key.f16 && t.starts_with("alias ") {
                // alias NAME = f32;
                let name = t["alias ".len()..].split('=').next().unwrap_or("").trim();
                if key.f16_aliases.is_empty() || key.f16_aliases.contains(&name) {
                    let _ = writeln!(out, "{}", t.replace("f32", "f16"));
                    continue;
                }
            }
            out.push_str(line);
            out.push('\n');
            continue;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !key.consts.is_empty() && !saw_spec {
        return Err("shader has no `// spec:begin` block".into());
    }
    if let Some(i) = used.iter().position(|u| !u) {
        return Err(format!(
            "specialization constant `{}` is not declared in the spec block",
            key.consts[i].0
        ));
    }
    Ok(out)
}

pub struct Compiled {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    pub label: Arc<str>,
}

pub struct PipelineCache {
    map: Mutex<HashMap<KernelKey, Arc<Compiled>>>,
    /// Bind group layout entries per (family, entry point): which bindings an entry point
    /// uses does not depend on the specialization constants (naga's analysis is syntactic),
    /// and parsing the larger shader families takes long enough to matter at start-up.
    layouts: Mutex<HashMap<(&'static str, &'static str), Vec<wgpu::BindGroupLayoutEntry>>>,
    /// Runtime bounds checks and workgroup zero-initialisation on (see [`shader_checks`]).
    checks: bool,
}

/// Whether shaders are compiled with wgpu's runtime checks (bounds checks, loop bounding,
/// workgroup memory zeroed): on in debug builds, which is what the tests run, off in release
/// where they only cost time; `DKP_SHADER_CHECKS=1` (or `0`) overrides either.
pub fn shader_checks() -> Result<bool> {
    match std::env::var("DKP_SHADER_CHECKS") {
        Ok(v) => match v.trim() {
            "1" | "on" | "true" => Ok(true),
            "0" | "off" | "false" => Ok(false),
            _ => Err(Error::Invalid(format!(
                "DKP_SHADER_CHECKS={v:?}: expected 1 (checks on) or 0 (off)"
            ))),
        },
        Err(_) => Ok(cfg!(debug_assertions)),
    }
}

/// The bind group layout of `entry`: `@group(0)` bindings the entry point uses, the uniform
/// block with a dynamic offset (so bind groups can be cached while the uniform arena moves),
/// storage buffers read-only unless declared writable.
fn reflect_bindings(
    src: &str,
    entry: &str,
) -> std::result::Result<Vec<wgpu::BindGroupLayoutEntry>, String> {
    use wgpu::naga;
    let module = naga::front::wgsl::parse_str(src).map_err(|e| e.emit_to_string(src))?;
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::empty(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .map_err(|e| format!("{e:?}"))?;
    let ep = module
        .entry_points
        .iter()
        .position(|e| e.name == entry)
        .ok_or_else(|| format!("no entry point `{entry}`"))?;
    let uses = info.get_entry_point(ep);
    let mut out = Vec::new();
    for (h, var) in module.global_variables.iter() {
        let Some(rb) = &var.binding else { continue };
        if uses[h].is_empty() {
            continue;
        }
        if rb.group != 0 {
            return Err(format!(
                "binding in group {} (only group 0 is bound)",
                rb.group
            ));
        }
        let ty = match var.space {
            naga::AddressSpace::Uniform => wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: true,
                min_binding_size: None,
            },
            naga::AddressSpace::Storage { access } => wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage {
                    read_only: !access.contains(naga::StorageAccess::STORE),
                },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            other => return Err(format!("binding {} in address space {other:?}", rb.binding)),
        };
        out.push(wgpu::BindGroupLayoutEntry {
            binding: rb.binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty,
            count: None,
        });
    }
    out.sort_by_key(|e| e.binding);
    Ok(out)
}

impl PipelineCache {
    pub fn new() -> Result<Self> {
        Ok(Self {
            map: Mutex::new(HashMap::new()),
            layouts: Mutex::new(HashMap::new()),
            checks: shader_checks()?,
        })
    }
    fn bindings(
        &self,
        key: &KernelKey,
        src: &str,
    ) -> std::result::Result<Vec<wgpu::BindGroupLayoutEntry>, String> {
        let id = (key.shader.name, key.entry);
        if let Some(e) = self.layouts.lock().expect("layout cache poisoned").get(&id) {
            return Ok(e.clone());
        }
        let e = reflect_bindings(src, key.entry)?;
        self.layouts
            .lock()
            .expect("layout cache poisoned")
            .insert(id, e.clone());
        Ok(e)
    }
    /// Whether this cache compiles with the runtime checks on.
    pub fn checks(&self) -> bool {
        self.checks
    }
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, device: &wgpu::Device, key: &KernelKey) -> Result<Arc<Compiled>> {
        if let Some(c) = self.map.lock().expect("pipeline cache poisoned").get(key) {
            return Ok(c.clone());
        }
        let src = key.render()?;
        let label = key.label();
        let entries = self.bindings(key, &src).map_err(|msg| Error::Shader {
            kernel: label.clone(),
            msg,
        })?;
        // Compile inside an error scope so an invalid shader is an Err naming the kernel, never
        // an abort from the uncaptured-error handler.
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(&label),
            source: wgpu::ShaderSource::Wgsl(src.into()),
        };
        let module = if self.checks {
            device.create_shader_module(desc)
        } else {
            // SAFETY: every kernel guards its own indices (the whole test suite runs with the
            // checks on, see `shader_checks`), so the runtime bounds checks are redundant.
            unsafe {
                device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
            }
        };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(&label),
            entries: &entries,
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(&label),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(key.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                // Kernels that use workgroup memory write it before they read it.
                zero_initialize_workgroup_memory: self.checks,
                ..Default::default()
            },
            cache: None,
        });
        if let Some(err) = pollster::block_on(scope.pop()) {
            return Err(Error::Shader {
                kernel: label,
                msg: err.to_string(),
            });
        }
        let c = Arc::new(Compiled {
            pipeline,
            layout,
            label: label.into(),
        });
        self.map
            .lock()
            .expect("pipeline cache poisoned")
            .insert(key.clone(), c.clone());
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    static TEST_SHADER: Shader = Shader {
        name: "x",
        source: "",
    };
    #[test]
    fn spec_block_rewrites_only_named_consts() {
        let body = "// spec:begin\nconst WG: u32 = 64u;\nconst A: f32 = 1.0;\nalias T = f32;\n// spec:end\nfn f() {}\n";
        let key = KernelKey::new(&TEST_SHADER, "main").u32("WG", 128);
        let s = render_spec(body, &key).unwrap();
        assert!(s.contains("const WG: u32 = 128u;"));
        assert!(s.contains("const A: f32 = 1.0;"));
        let mut k16 = key.clone();
        k16.f16 = true;
        let s = render_spec(body, &k16).unwrap();
        assert!(s.starts_with("enable f16;"));
        assert!(s.contains("alias T = f16;"));
        let body2 = "// spec:begin\nalias A = f32;\nalias W = f32;\n// spec:end\n";
        let s = render_spec(body2, &KernelKey::new(&TEST_SHADER, "main").half(&["W"])).unwrap();
        assert!(s.starts_with("enable f16;"));
        assert!(s.contains("alias A = f32;") && s.contains("alias W = f16;"));
        let s = render_spec(body2, &KernelKey::new(&TEST_SHADER, "main").half(&[])).unwrap();
        assert!(!s.contains("f16"));
        let bad = KernelKey::new(&TEST_SHADER, "main").u32("NOPE", 1);
        assert!(render_spec(body, &bad).is_err());
    }
}
