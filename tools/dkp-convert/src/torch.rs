//! PyTorch checkpoint containers: the zip format (torch >= 1.6) and the legacy stream format
//! (five pickles followed by raw storages), plus state-dict extraction and tensor
//! materialization (strided views copied out into contiguous little-endian bytes).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Cursor, Read, Seek};
use std::path::Path;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::pickle::{self, Object, TensorRef, Unpickled, Value};

/// `0x1950a86a20f9469cfc6c`, the legacy-format magic number, as little-endian bytes (LONG1).
const LEGACY_MAGIC_LE: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const LEGACY_PROTOCOL_VERSION: i64 = 1001;

/// Keys under which training checkpoints commonly nest the state dict, in search order.
pub const WRAPPER_KEYS: &[&str] = &[
    "state_dict",
    "model",
    "ema",
    "params",
    "model_state_dict",
    "params_ema",
    "net",
    "module",
];

/// Expanded views (stride 0) may describe more elements than their storage holds; beyond this
/// many elements such a tensor is refused (a crafted file could otherwise ask for terabytes).
pub const MAX_EXPANDED_ELEMENTS: u64 = 1 << 24;

/// Container format of a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `torch.save` default since PyTorch 1.6: a zip archive with `data.pkl` and `data/<key>`.
    Zip,
    /// Pre-1.6 stream: magic, protocol version, sys-info, state-dict pickle, storage keys, data.
    Legacy,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Zip => "zip (torch >= 1.6)",
            Format::Legacy => "legacy stream (torch < 1.6)",
        })
    }
}

/// What to do with a common prefix such as DataParallel's `module.`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PrefixMode {
    /// Strip `module.` when every key carries it (repeatedly, for nested wrappers).
    #[default]
    Auto,
    /// Keep names exactly as stored.
    Keep,
    /// Strip this prefix from every key that starts with it.
    Strip(String),
}

/// How to find the state dict inside the file.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Explicit path to the state dict inside the top-level dict, `/`-separated (e.g.
    /// `checkpoint/ema`). `None`: automatic (top level, else [`WRAPPER_KEYS`]).
    pub key: Option<String>,
    pub prefix: PrefixMode,
}

/// One tensor of the state dict, validated against its storage.
#[derive(Clone, Debug)]
pub struct TensorEntry {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Element strides into the root storage.
    pub stride: Vec<usize>,
    /// Element offset into the root storage (legacy view offsets included).
    pub offset: usize,
    /// Root storage key.
    pub storage: String,
    /// True when the tensor is not a plain contiguous run of its storage.
    pub is_view: bool,
}

impl TensorEntry {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn nbytes(&self) -> usize {
        self.numel() * self.dtype.size()
    }
}

trait ReadSeek: Read + Seek {}
impl<T: Read + Seek> ReadSeek for T {}

enum Source {
    Zip {
        archive: Box<zip::ZipArchive<Box<dyn ReadSeek>>>,
        /// Archive folder, e.g. `archive/` (with the slash).
        prefix: String,
    },
    Legacy {
        data: Vec<u8>,
        /// key -> (byte start, byte length) of each storage's raw data.
        spans: HashMap<String, (usize, usize)>,
    },
}

/// A parsed checkpoint: the tensor list and access to the storage bytes.
pub struct Checkpoint {
    pub format: Format,
    pub tensors: Vec<TensorEntry>,
    /// Human-readable remarks (wrapper key used, prefix stripped, skipped entries, ...).
    pub notes: Vec<String>,
    big_endian: bool,
    source: Source,
    cache: Option<(String, Vec<u8>)>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("format", &self.format)
            .field("tensors", &self.tensors.len())
            .field("notes", &self.notes)
            .finish()
    }
}

/// Element size of a storage class, also for classes we cannot convert (to skip their bytes).
fn storage_class_elem_size(class: &str) -> Option<usize> {
    if let Some(d) = DType::from_storage_class(class) {
        return Some(d.size());
    }
    Some(match class {
        "ComplexFloatStorage" => 8,
        "ComplexDoubleStorage" => 16,
        "QInt8Storage" | "QUInt8Storage" | "QUInt4x2Storage" | "QUInt2x4Storage" => 1,
        "QInt32Storage" => 4,
        _ => return None,
    })
}

impl Checkpoint {
    /// Opens a checkpoint file (zip or legacy format, detected from the content).
    pub fn open(path: &Path, opts: &LoadOptions) -> Result<Checkpoint> {
        let ctx = |op: &str| {
            let what = format!("cannot {op} {}", path.display());
            move |e| Error::io(what, e)
        };
        let mut f = File::open(path).map_err(ctx("open"))?;
        let mut head = [0u8; 4];
        let n = read_up_to(&mut f, &mut head).map_err(ctx("read"))?;
        if is_zip(&head[..n]) {
            let len = f.metadata().map_err(ctx("stat"))?.len();
            f.rewind().map_err(ctx("read"))?;
            Self::from_zip(Box::new(BufReader::new(f)), len, opts)
        } else {
            f.rewind().map_err(ctx("read"))?;
            let mut data = Vec::new();
            f.read_to_end(&mut data).map_err(ctx("read"))?;
            Self::from_legacy(data, opts)
        }
    }

    /// Parses a checkpoint held in memory.
    pub fn from_bytes(data: Vec<u8>, opts: &LoadOptions) -> Result<Checkpoint> {
        if is_zip(&data) {
            let len = data.len() as u64;
            Self::from_zip(Box::new(Cursor::new(data)), len, opts)
        } else {
            Self::from_legacy(data, opts)
        }
    }

    // ------------------------------------------------------------------ zip format

    fn from_zip(
        reader: Box<dyn ReadSeek>,
        file_len: u64,
        opts: &LoadOptions,
    ) -> Result<Checkpoint> {
        let mut archive = zip::ZipArchive::new(reader)?;
        let mut pkl: Vec<String> = Vec::new();
        for name in archive.file_names() {
            let name = name?;
            let is_top_pkl = name == "data.pkl"
                || (name.ends_with("/data.pkl") && name.matches('/').count() == 1);
            if is_top_pkl {
                pkl.push(name.into_owned());
            }
        }
        let pkl_name = match pkl.len() {
            0 => {
                return Err(Error::NotCheckpoint(
                    "zip archive without a `<name>/data.pkl` entry".into(),
                ));
            }
            1 => pkl.remove(0),
            _ => {
                return Err(Error::Format(format!(
                    "zip archive with several data.pkl entries: {pkl:?}"
                )));
            }
        };
        let prefix = pkl_name[..pkl_name.len() - "data.pkl".len()].to_string();
        let pickle_bytes = read_entry(&mut archive, &pkl_name, file_len)?;
        let big_endian = match archive.index_for_name(&format!("{prefix}byteorder")) {
            None => false,
            Some(_) => {
                let b = read_entry(&mut archive, &format!("{prefix}byteorder"), file_len)?;
                match b.as_slice() {
                    b"little" => false,
                    b"big" => true,
                    other => {
                        return Err(Error::Format(format!(
                            "unknown byteorder {:?}",
                            String::from_utf8_lossy(other)
                        )));
                    }
                }
            }
        };
        let u = pickle::unpickle(&pickle_bytes, 0, &pkl_name)?;
        if u.end != pickle_bytes.len() {
            return Err(Error::Format(format!(
                "{} trailing bytes after the pickle in {pkl_name}",
                pickle_bytes.len() - u.end
            )));
        }
        let (tensors, notes) = extract_state_dict(&u, opts)?;

        // Storage sizes, checked before anything is written.
        let mut sizes: HashMap<String, u64> = HashMap::new();
        for t in &tensors {
            if sizes.contains_key(&t.1.storage.key) {
                continue;
            }
            let name = format!("{prefix}data/{}", t.1.storage.key);
            if archive.index_for_name(&name).is_none() {
                return Err(Error::Format(format!("storage entry `{name}` is missing")));
            }
            let entry = stored_entry(&mut archive, &name)?;
            sizes.insert(t.1.storage.key.clone(), entry.size());
        }
        let tensors = validate_tensors(tensors, |key, _es| {
            sizes
                .get(key)
                .copied()
                .ok_or_else(|| Error::Format(format!("storage `{key}` is missing")))
        })?;
        Ok(Checkpoint {
            format: Format::Zip,
            tensors,
            notes,
            big_endian,
            source: Source::Zip {
                archive: Box::new(archive),
                prefix,
            },
            cache: None,
        })
    }

    // ------------------------------------------------------------------ legacy format

    fn from_legacy(data: Vec<u8>, opts: &LoadOptions) -> Result<Checkpoint> {
        if data.len() > 262 && &data[257..262] == b"ustar" {
            return Err(Error::NotCheckpoint(
                "tar-format checkpoint (PyTorch < 0.1.10) is not supported".into(),
            ));
        }
        let not_ckpt = || {
            Error::NotCheckpoint(
                "neither a zip archive nor a legacy torch.save stream (magic number missing)"
                    .into(),
            )
        };
        let magic = pickle::unpickle(&data, 0, "magic-number pickle").map_err(|_| not_ckpt())?;
        match &magic.root {
            Value::BigInt(b) if **b == LEGACY_MAGIC_LE => {}
            _ => return Err(not_ckpt()),
        }
        let proto = pickle::unpickle(&data, magic.end, "protocol-version pickle")?;
        match proto.root {
            Value::Int(LEGACY_PROTOCOL_VERSION) => {}
            ref v => {
                return Err(Error::Format(format!(
                    "unsupported legacy protocol version {v:?} (expected 1001)"
                )));
            }
        }
        let sys = pickle::unpickle(&data, proto.end, "sys-info pickle")?;
        let big_endian = match sys.as_dict(&sys.root).map(|d| d.get_str("little_endian")) {
            Some(Some(Value::Bool(little))) => !*little,
            Some(None) => false,
            _ => return Err(Error::Format("sys-info pickle is not a dict".into())),
        };
        let main = pickle::unpickle(&data, sys.end, "state-dict pickle")?;
        let keys = pickle::unpickle(&data, main.end, "storage-keys pickle")?;
        let key_list: Vec<String> = match keys.as_seq(&keys.root) {
            Some(items) => items
                .iter()
                .map(|v| match v {
                    Value::Str(s) => Ok(s.to_string()),
                    Value::Int(i) => Ok(i.to_string()),
                    _ => Err(Error::Format("storage key list holds a non-string".into())),
                })
                .collect::<Result<_>>()?,
            None => return Err(Error::Format("storage key pickle is not a list".into())),
        };

        // Element size and element count of every root storage referenced by the pickle.
        let mut roots: HashMap<String, (usize, i64, String)> = HashMap::new();
        for o in &main.heap {
            if let Object::Storage(s) = o {
                let es = storage_class_elem_size(&s.class).ok_or_else(|| {
                    Error::Format(format!("storage `{}` has unknown class {}", s.key, s.class))
                })?;
                match roots.get(&s.key) {
                    Some((e, n, c)) if *e != es || *n != s.numel => {
                        return Err(Error::Format(format!(
                            "storage `{}` is referenced as {c} of {n} elements and as {} of {} elements",
                            s.key, s.class, s.numel
                        )));
                    }
                    Some(_) => {}
                    None => {
                        roots.insert(s.key.clone(), (es, s.numel, s.class.clone()));
                    }
                }
            }
        }
        let mut spans: HashMap<String, (usize, usize)> = HashMap::new();
        let mut pos = keys.end;
        for key in &key_list {
            let (es, numel, _) = roots.get(key).ok_or_else(|| {
                Error::Format(format!(
                    "storage `{key}` is listed but no tensor references it (unknown element type)"
                ))
            })?;
            let hdr = data.get(pos..pos + 8).ok_or_else(|| {
                Error::Format(format!(
                    "truncated: storage `{key}` header at byte {pos} is past the end ({} bytes)",
                    data.len()
                ))
            })?;
            let n = i64::from_le_bytes(hdr.try_into().expect("8 bytes"));
            if n != *numel {
                return Err(Error::Format(format!(
                    "storage `{key}`: the file holds {n} elements but the pickle says {numel}"
                )));
            }
            let len = usize::try_from(n)
                .ok()
                .and_then(|n| n.checked_mul(*es))
                .ok_or_else(|| Error::Format(format!("storage `{key}`: bad element count {n}")))?;
            let start = pos + 8;
            if spans.insert(key.clone(), (start, len)).is_some() {
                return Err(Error::Format(format!("storage `{key}` is listed twice")));
            }
            let end = start
                .checked_add(len)
                .filter(|&e| e <= data.len())
                .ok_or_else(|| {
                    Error::Format(format!(
                        "truncated: storage `{key}` needs {len} bytes at byte {start}, file has {}",
                        data.len()
                    ))
                })?;
            pos = end;
        }
        let (tensors, mut notes) = extract_state_dict(&main, opts)?;
        let tensors = validate_tensors(tensors, |key, es| match spans.get(key) {
            Some(&(_, len)) => Ok(len as u64),
            None => Err(Error::Format(format!(
                "storage `{key}` (element size {es}) is not in the storage key list"
            ))),
        })?;
        if pos < data.len() {
            notes.push(format!(
                "{} trailing bytes after the last storage were ignored",
                data.len() - pos
            ));
        }
        Ok(Checkpoint {
            format: Format::Legacy,
            tensors,
            notes,
            big_endian,
            source: Source::Legacy { data, spans },
            cache: None,
        })
    }

    // ------------------------------------------------------------------ data access

    /// Raw bytes of a root storage, converted to little-endian.
    fn storage_bytes(&mut self, key: &str, es: usize) -> Result<Cow<'_, [u8]>> {
        let big = self.big_endian;
        match &mut self.source {
            Source::Legacy { data, spans } => {
                let &(start, len) = spans
                    .get(key)
                    .ok_or_else(|| Error::Format(format!("storage `{key}` is missing")))?;
                let raw = &data[start..start + len];
                if big && es > 1 {
                    let mut v = raw.to_vec();
                    v.chunks_exact_mut(es).for_each(|c| c.reverse());
                    Ok(Cow::Owned(v))
                } else {
                    Ok(Cow::Borrowed(raw))
                }
            }
            Source::Zip { archive, prefix } => {
                if self.cache.as_ref().map(|c| c.0.as_str()) != Some(key) {
                    let name = format!("{prefix}data/{key}");
                    let mut v = read_entry(archive, &name, u64::MAX)?;
                    if big && es > 1 {
                        v.chunks_exact_mut(es).for_each(|c| c.reverse());
                    }
                    self.cache = Some((key.to_string(), v));
                }
                Ok(Cow::Borrowed(&self.cache.as_ref().expect("just filled").1))
            }
        }
    }

    /// The contiguous little-endian bytes of tensor `i` (row-major, in its own dtype).
    pub fn tensor_bytes(&mut self, i: usize) -> Result<Vec<u8>> {
        let t = self
            .tensors
            .get(i)
            .cloned()
            .ok_or_else(|| Error::Format(format!("no tensor #{i}")))?;
        let es = t.dtype.size();
        let storage = self.storage_bytes(&t.storage, es)?;
        gather(&storage, es, t.offset, &t.shape, &t.stride)
            .map_err(|msg| Error::tensor(&t.name, msg))
    }
}

fn is_zip(head: &[u8]) -> bool {
    head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06")
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Reads a whole zip entry; its declared size must not exceed `limit` (the archive size).
fn read_entry<R: Read + Seek>(
    archive: &mut zip::ZipArchive<R>,
    name: &str,
    limit: u64,
) -> Result<Vec<u8>> {
    let mut entry = stored_entry(archive, name)?;
    let size = entry.size();
    if size > limit {
        return Err(Error::Format(format!(
            "entry `{name}` claims {size} bytes, more than the archive holds"
        )));
    }
    let mut v = Vec::new();
    v.try_reserve_exact(size as usize)
        .map_err(|_| Error::Format(format!("entry `{name}`: cannot allocate {size} bytes")))?;
    entry
        .read_to_end(&mut v)
        .map_err(|e| Error::io(format!("cannot read zip entry `{name}`"), e))?;
    Ok(v)
}

/// Opens a zip entry for reading, after checking that it is STORED: the zip reader is built
/// without decompressors (PyTorch never compresses), and its own error for a compressed
/// entry ("compression method not supported: 8") names neither the entry nor the cause.
fn stored_entry<'a, R: Read + Seek>(
    archive: &'a mut zip::ZipArchive<R>,
    name: &str,
) -> Result<zip::read::ZipFile<'a, R>> {
    let index = archive
        .index_for_name(name)
        .ok_or_else(|| Error::Format(format!("zip entry `{name}` is missing")))?;
    let method = archive.by_index_data(index)?.compression();
    if method != zip::CompressionMethod::Stored {
        return Err(Error::Format(format!(
            "zip entry `{name}` is compressed with {}; PyTorch's torch.save writes STORED \
             (uncompressed) entries, so this file was re-zipped by another tool. Re-save it \
             with torch.save (e.g. `torch.save(torch.load(f, weights_only=True), out)`) or \
             re-zip it without compression (`zip -0`)",
            compression_name(method)
        )));
    }
    Ok(archive.by_index(index)?)
}

/// Human-readable name of a zip compression method.
fn compression_name(m: zip::CompressionMethod) -> String {
    use zip::CompressionMethod as M;
    let known = [
        (M::DEFLATE, "Deflate"),
        (M::DEFLATE64, "Deflate64"),
        (M::BZIP2, "BZIP2"),
        (M::LZMA, "LZMA"),
        (M::ZSTD, "Zstandard"),
        (M::XZ, "XZ"),
        (M::PPMD, "PPMd"),
        (M::AES, "AES encryption"),
    ];
    match known.iter().find(|(k, _)| *k == m) {
        Some((_, n)) => n.to_string(),
        None => format!("compression method {m}"),
    }
}

// ---------------------------------------------------------------------- state-dict extraction

fn has_tensors(u: &Unpickled, d: &pickle::Dict) -> bool {
    d.entries.iter().any(|(_, v)| u.as_tensor(v).is_some())
}

fn key_string(k: &Value) -> Option<String> {
    match k {
        Value::Str(s) => Some(s.to_string()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn dict_keys(d: &pickle::Dict) -> String {
    let keys: Vec<String> = d
        .entries
        .iter()
        .take(12)
        .map(|(k, _)| key_string(k).unwrap_or_else(|| "?".into()))
        .collect();
    let more = if d.entries.len() > 12 { ", ..." } else { "" };
    format!("[{}{more}]", keys.join(", "))
}

/// Depth-first search of [`WRAPPER_KEYS`] for a dict holding tensors.
fn find_wrapped<'u>(
    u: &'u Unpickled,
    d: &'u pickle::Dict,
    path: &mut Vec<&'static str>,
    depth: u32,
) -> Option<&'u pickle::Dict> {
    if depth > 3 {
        return None;
    }
    for &k in WRAPPER_KEYS {
        if let Some(inner) = d.get_str(k).and_then(|v| u.as_dict(v)) {
            path.push(k);
            if has_tensors(u, inner) {
                return Some(inner);
            }
            if let Some(found) = find_wrapped(u, inner, path, depth + 1) {
                return Some(found);
            }
            path.pop();
        }
    }
    None
}

/// Flattens nested dicts to `a.b.c` names. `path` holds the dicts from the state dict down to
/// `d` (and `keys` the keys leading there): a dict that contains itself, directly or further
/// down (a pickle can build one through the memo), is refused instead of being unrolled
/// into copies. The same tensor or sub-dict under two names is not a cycle and is kept.
fn flatten<'u>(
    u: &'u Unpickled,
    d: &'u pickle::Dict,
    path: &mut Vec<&'u pickle::Dict>,
    keys: &mut Vec<String>,
    out: &mut Vec<(String, TensorRef)>,
    skipped: &mut Vec<String>,
) -> Result<()> {
    path.push(d);
    let prefix: String = keys.iter().map(|k| format!("{k}.")).collect();
    for (k, v) in &d.entries {
        let Some(k) = key_string(k) else {
            skipped.push(format!("{prefix}<non-string key> ({})", u.type_name(v)));
            continue;
        };
        let name = format!("{prefix}{k}");
        if let Some(t) = u.as_tensor(v) {
            out.push((name, t.clone()));
        } else if let Some(inner) = u.as_dict(v) {
            if let Some(level) = path.iter().position(|p| std::ptr::eq(*p, inner)) {
                keys.push(k);
                let what = if level == 0 {
                    "the state dict".to_string()
                } else {
                    format!("the dict at key {}", keys[..level].join("/"))
                };
                return Err(Error::Format(format!(
                    "{what} contains itself at key {} (a reference cycle); refusing to \
                     flatten it",
                    keys.join("/")
                )));
            }
            if path.len() > 8 {
                skipped.push(format!("{name} (dict nested too deeply)"));
                continue;
            }
            keys.push(k);
            flatten(u, inner, path, keys, out, skipped)?;
            keys.pop();
        } else {
            skipped.push(format!("{name} ({})", u.type_name(v)));
        }
    }
    path.pop();
    Ok(())
}

/// `(name, tensor)` pairs in state-dict order.
type NamedTensors = Vec<(String, TensorRef)>;

/// Finds the state dict (unwrapping `state_dict` / `model` / ... containers), flattens it to
/// `name -> tensor` and applies the prefix rule.
fn extract_state_dict(u: &Unpickled, opts: &LoadOptions) -> Result<(NamedTensors, Vec<String>)> {
    let mut notes = Vec::new();
    let top = u.as_dict(&u.root).ok_or_else(|| {
        Error::Format(format!(
            "the top-level object is a {}, expected a dict (state dict)",
            u.type_name(&u.root)
        ))
    })?;
    let sd = if let Some(path) = &opts.key {
        let mut d = top;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            d = match d.get_str(part) {
                Some(v) => u.as_dict(v).ok_or_else(|| {
                    Error::Format(format!(
                        "`{part}` of --key {path} is a {}, not a dict",
                        u.type_name(v)
                    ))
                })?,
                None => {
                    return Err(Error::Format(format!(
                        "no key `{part}` (of --key {path}); available: {}",
                        dict_keys(d)
                    )));
                }
            };
        }
        notes.push(format!("using the state dict under `{path}`"));
        d
    } else if has_tensors(u, top) {
        top
    } else {
        let mut path = Vec::new();
        match find_wrapped(u, top, &mut path, 0) {
            Some(d) => {
                notes.push(format!(
                    "using the state dict nested under `{}`",
                    path.join("/")
                ));
                d
            }
            None => {
                return Err(Error::Format(format!(
                    "no state dict found: the top-level dict has no tensors and none of the keys \
                     {WRAPPER_KEYS:?} holds one; top-level keys: {} (use --key)",
                    dict_keys(top)
                )));
            }
        }
    };
    let mut tensors = Vec::new();
    let mut skipped = Vec::new();
    flatten(
        u,
        sd,
        &mut Vec::new(),
        &mut Vec::new(),
        &mut tensors,
        &mut skipped,
    )?;
    if tensors.is_empty() {
        return Err(Error::Format("the state dict holds no tensors".into()));
    }
    if !skipped.is_empty() {
        let shown: Vec<_> = skipped.iter().take(10).cloned().collect();
        let more = if skipped.len() > 10 { ", ..." } else { "" };
        notes.push(format!(
            "skipped {} non-tensor entries: {}{more}",
            skipped.len(),
            shown.join(", ")
        ));
    }
    match &opts.prefix {
        PrefixMode::Keep => {}
        PrefixMode::Auto => loop {
            const P: &str = "module.";
            if tensors
                .iter()
                .all(|(n, _)| n.starts_with(P) && n.len() > P.len())
            {
                for (n, _) in tensors.iter_mut() {
                    n.drain(..P.len());
                }
                notes.push(format!(
                    "stripped the DataParallel prefix `{P}` from all {} keys",
                    tensors.len()
                ));
            } else {
                break;
            }
        },
        PrefixMode::Strip(p) => {
            let mut n_stripped = 0;
            for (n, _) in tensors.iter_mut() {
                if n.starts_with(p.as_str()) && n.len() > p.len() {
                    n.drain(..p.len());
                    n_stripped += 1;
                }
            }
            notes.push(format!("stripped `{p}` from {n_stripped} keys"));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (n, _) in &tensors {
        if !seen.insert(n.as_str()) {
            return Err(Error::Format(format!("duplicate tensor name `{n}`")));
        }
    }
    Ok((tensors, notes))
}

// ---------------------------------------------------------------------- validation / copy-out

/// Checks every tensor against its storage; `storage_len(key, elem_size)` gives the byte length
/// of a root storage.
fn validate_tensors(
    tensors: Vec<(String, TensorRef)>,
    mut storage_len: impl FnMut(&str, usize) -> Result<u64>,
) -> Result<Vec<TensorEntry>> {
    let mut out = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let s = &t.storage;
        let dtype = s.dtype.ok_or_else(|| {
            Error::tensor(
                &name,
                format!("unsupported dtype (storage class torch.{})", s.class),
            )
        })?;
        let es = dtype.size();
        let bad = |msg: String| Error::tensor(&name, msg);
        if t.shape.len() != t.stride.len() {
            return Err(bad(format!(
                "size {:?} and stride {:?} have different ranks",
                t.shape, t.stride
            )));
        }
        let to_usize = |v: i64, what: &str| {
            usize::try_from(v).map_err(|_| bad(format!("negative or invalid {what} {v}")))
        };
        let shape: Vec<usize> = t
            .shape
            .iter()
            .map(|&v| to_usize(v, "size"))
            .collect::<Result<_>>()?;
        let stride: Vec<usize> = t
            .stride
            .iter()
            .map(|&v| to_usize(v, "stride"))
            .collect::<Result<_>>()?;
        let root_numel = to_usize(s.numel, "storage size")? as u64;
        let (base, limit) = match &s.view {
            None => (0u64, root_numel),
            Some((_, off, n)) => {
                let off = to_usize(*off, "storage view offset")? as u64;
                let n = to_usize(*n, "storage view size")? as u64;
                if off.checked_add(n).is_none_or(|e| e > root_numel) {
                    return Err(bad(format!(
                        "storage view [{off}, {off}+{n}) exceeds its root storage of {root_numel} elements"
                    )));
                }
                (off, off + n)
            }
        };
        let offset = base
            .checked_add(to_usize(t.offset, "storage offset")? as u64)
            .ok_or_else(|| bad("storage offset overflows".into()))?;
        let numel = shape
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
            .filter(|&n| {
                n.checked_mul(es as u64)
                    .is_some_and(|b| b <= isize::MAX as u64)
            })
            .ok_or_else(|| bad(format!("size {shape:?} is too large")))?;
        if numel > 0 {
            let last = shape
                .iter()
                .zip(&stride)
                .try_fold(offset, |a, (&d, &s)| {
                    (d as u64 - 1)
                        .checked_mul(s as u64)
                        .and_then(|x| a.checked_add(x))
                })
                .ok_or_else(|| bad("strides overflow".into()))?;
            if last >= limit {
                return Err(bad(format!(
                    "size {shape:?} stride {stride:?} offset {} reaches element {last}, \
                     beyond its storage of {} elements",
                    offset - base,
                    limit - base
                )));
            }
            if numel > root_numel && numel > MAX_EXPANDED_ELEMENTS {
                return Err(bad(format!(
                    "expanded view with {numel} elements over a storage of {root_numel}; refusing \
                     more than {MAX_EXPANDED_ELEMENTS}"
                )));
            }
        }
        let have = storage_len(&s.key, es)?;
        let need = root_numel * es as u64;
        if have != need {
            return Err(bad(format!(
                "storage `{}` holds {have} bytes, expected {root_numel} elements x {es} bytes = {need}",
                s.key
            )));
        }
        let contiguous = contiguous_strides(&shape) == stride || numel <= 1;
        let is_view = !contiguous || offset != 0 || numel != root_numel;
        out.push(TensorEntry {
            name,
            dtype,
            shape,
            stride,
            offset: offset as usize,
            storage: s.key.clone(),
            is_view,
        });
    }
    Ok(out)
}

fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Copies a strided view out of `storage` into contiguous row-major bytes. Bounds were
/// validated already; they are re-checked here so that a logic error returns an error
/// instead of panicking.
pub fn gather(
    storage: &[u8],
    es: usize,
    offset: usize,
    shape: &[usize],
    stride: &[usize],
) -> std::result::Result<Vec<u8>, String> {
    let numel: usize = shape.iter().product();
    let nbytes = numel * es;
    let mut out = Vec::new();
    out.try_reserve_exact(nbytes)
        .map_err(|_| format!("cannot allocate {nbytes} bytes"))?;
    if numel == 0 {
        return Ok(out);
    }
    let oob = || "view reaches past the end of its storage".to_string();
    let slice = |start_el: usize, n_el: usize| -> std::result::Result<&[u8], String> {
        storage
            .get(start_el * es..(start_el + n_el) * es)
            .ok_or_else(oob)
    };
    if contiguous_strides(shape) == stride || numel == 1 {
        out.extend_from_slice(slice(offset, numel)?);
        return Ok(out);
    }
    // Odometer over all dims but the last; the last dim is copied as a run when unit-strided.
    let nd = shape.len();
    let (inner, inner_stride) = (shape[nd - 1], stride[nd - 1]);
    let mut idx = vec![0usize; nd - 1];
    let mut base = offset;
    loop {
        if inner_stride == 1 {
            out.extend_from_slice(slice(base, inner)?);
        } else {
            for j in 0..inner {
                out.extend_from_slice(slice(base + j * inner_stride, 1)?);
            }
        }
        // increment the odometer
        let mut d = nd - 1;
        loop {
            if d == 0 {
                return Ok(out);
            }
            d -= 1;
            idx[d] += 1;
            base += stride[d];
            if idx[d] < shape[d] {
                break;
            }
            base -= stride[d] * shape[d];
            idx[d] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_views() {
        // storage 0..12 as f32-sized (es=1 for simplicity)
        let s: Vec<u8> = (0..12).collect();
        // 3x4 transposed -> 4x3 with strides (1, 4)
        let t = gather(&s, 1, 0, &[4, 3], &[1, 4]).unwrap();
        assert_eq!(t, vec![0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
        // slice [1:3, 1:3] of 3x4 -> offset 5, strides (4,1)
        let t = gather(&s, 1, 5, &[2, 2], &[4, 1]).unwrap();
        assert_eq!(t, vec![5, 6, 9, 10]);
        // expanded (stride 0)
        let t = gather(&s, 1, 2, &[3, 2], &[0, 1]).unwrap();
        assert_eq!(t, vec![2, 3, 2, 3, 2, 3]);
        // 0-d and empty
        assert_eq!(gather(&s, 1, 7, &[], &[]).unwrap(), vec![7]);
        assert!(gather(&s, 1, 0, &[0, 3], &[3, 1]).unwrap().is_empty());
        // element size 2, column of 3x2
        let t = gather(&s, 2, 0, &[3], &[2]).unwrap();
        assert_eq!(t, vec![0, 1, 4, 5, 8, 9]);
        // out of bounds is an error, not a panic
        assert!(gather(&s, 1, 10, &[2, 2], &[4, 1]).is_err());
    }
}
