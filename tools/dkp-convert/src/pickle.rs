//! A restricted pickle virtual machine.
//!
//! It implements only the opcodes that `torch.save` emits for a state dict and never executes
//! anything: `GLOBAL` / `STACK_GLOBAL` resolve against a fixed allowlist of names
//! ([`Global`]), any other name is refused with [`Error::ForbiddenGlobal`], and `REDUCE` on an
//! allowlisted callable just builds a Rust value (a dict, a tensor descriptor, ...).
//!
//! Objects live in an arena (`Vec<Object>`) and values refer to them by index, so the Python
//! reference semantics of the memo (mutating a memoized dict) are kept, cycles are harmless and
//! dropping a deeply nested structure never recurses.

use std::collections::HashMap;
use std::rc::Rc;

use crate::dtype::DType;
use crate::error::{Error, Result};

/// Index of an object in [`Unpickled::heap`].
pub type ObjId = usize;

/// A pickle value. Containers and torch objects are stored in the heap and referenced by id.
#[derive(Clone, Debug)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer that does not fit in i64: little-endian two's-complement bytes (as in LONG1).
    BigInt(Rc<[u8]>),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Obj(ObjId),
}

/// Allowlisted globals. Nothing else can be named by a pickle we accept.
#[derive(Clone, Debug, PartialEq)]
pub enum Global {
    /// `collections.OrderedDict`
    OrderedDict,
    /// `torch._utils._rebuild_tensor_v2`
    RebuildTensorV2,
    /// `torch._utils._rebuild_tensor`
    RebuildTensor,
    /// `torch._utils._rebuild_parameter`
    RebuildParameter,
    /// `torch._utils._rebuild_parameter_with_state`
    RebuildParameterWithState,
    /// `torch._tensor._rebuild_from_type_v2`
    RebuildFromTypeV2,
    /// `torch.<Name>Storage`: a type tag only (never called). `None` when the storage class
    /// names a dtype we cannot convert (the error then names the tensor that uses it).
    StorageType(Option<DType>, String),
    /// `torch.Tensor` / `torch.nn.parameter.Parameter`: tensor classes, as the `new_type`
    /// argument of `_rebuild_from_type_v2`.
    TensorClass(String),
}

impl Global {
    /// Resolves `module.name` against the allowlist.
    pub fn resolve(module: &str, name: &str) -> Result<Global> {
        let g = match (module, name) {
            ("collections", "OrderedDict") => Global::OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
            ("torch._utils", "_rebuild_tensor") => Global::RebuildTensor,
            ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
            ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
            ("torch._tensor", "_rebuild_from_type_v2") => Global::RebuildFromTypeV2,
            ("torch", "Tensor") | ("torch.nn.parameter", "Parameter") => {
                Global::TensorClass(format!("{module}.{name}"))
            }
            ("torch", n)
                if n.len() > "Storage".len()
                    && n.ends_with("Storage")
                    && n.bytes().all(|b| b.is_ascii_alphanumeric()) =>
            {
                Global::StorageType(DType::from_storage_class(n), n.to_string())
            }
            _ => return Err(Error::ForbiddenGlobal(format!("{module}.{name}"))),
        };
        Ok(g)
    }
}

/// A storage reference produced by a persistent id `('storage', <class>, key, location, numel[, view])`.
#[derive(Clone, Debug)]
pub struct StorageRef {
    /// `None`: unsupported storage class, named in `class`.
    pub dtype: Option<DType>,
    pub class: String,
    /// Key of the root storage (zip: `data/<key>`; legacy: entry of the storage-key list).
    pub key: String,
    /// Element count of the root storage.
    pub numel: i64,
    /// Legacy format only: the tensor's storage is a view `(view_key, offset, numel)` of the root.
    pub view: Option<(String, i64, i64)>,
}

/// A tensor descriptor from `_rebuild_tensor[_v2]`. Offsets and strides count elements.
#[derive(Clone, Debug)]
pub struct TensorRef {
    pub storage: StorageRef,
    pub offset: i64,
    pub shape: Vec<i64>,
    pub stride: Vec<i64>,
}

/// Hashable dict keys (the subset of Python keys that state dicts use).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum KeyHash {
    Str(Rc<str>),
    Int(i64),
    Bytes(Rc<[u8]>),
    None,
}

impl KeyHash {
    fn of(v: &Value) -> Option<KeyHash> {
        Some(match v {
            Value::Str(s) => KeyHash::Str(s.clone()),
            Value::Int(i) => KeyHash::Int(*i),
            Value::Bool(b) => KeyHash::Int(*b as i64),
            Value::Bytes(b) => KeyHash::Bytes(b.clone()),
            Value::None => KeyHash::None,
            _ => return None,
        })
    }
}

/// An insertion-ordered dict (Python dicts and `OrderedDict` alike).
#[derive(Clone, Debug, Default)]
pub struct Dict {
    pub entries: Vec<(Value, Value)>,
    index: HashMap<KeyHash, usize>,
}

impl Dict {
    pub fn insert(&mut self, k: Value, v: Value) {
        match KeyHash::of(&k) {
            Some(h) => {
                if let Some(&i) = self.index.get(&h) {
                    self.entries[i].1 = v;
                } else {
                    self.index.insert(h, self.entries.len());
                    self.entries.push((k, v));
                }
            }
            None => self.entries.push((k, v)),
        }
    }

    /// Value stored under a string key.
    pub fn get_str(&self, key: &str) -> Option<&Value> {
        let h = KeyHash::Str(Rc::from(key));
        self.index.get(&h).map(|&i| &self.entries[i].1)
    }
}

/// Heap objects.
#[derive(Clone, Debug)]
pub enum Object {
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Dict),
    Global(Global),
    Storage(StorageRef),
    Tensor(TensorRef),
}

/// The result of running one pickle.
#[derive(Debug)]
pub struct Unpickled {
    pub heap: Vec<Object>,
    pub root: Value,
    /// Byte offset just past the STOP opcode (start of whatever follows the pickle).
    pub end: usize,
}

impl Unpickled {
    pub fn obj(&self, v: &Value) -> Option<&Object> {
        match v {
            Value::Obj(id) => self.heap.get(*id),
            _ => None,
        }
    }

    pub fn as_dict(&self, v: &Value) -> Option<&Dict> {
        match self.obj(v) {
            Some(Object::Dict(d)) => Some(d),
            _ => None,
        }
    }

    pub fn as_tensor(&self, v: &Value) -> Option<&TensorRef> {
        match self.obj(v) {
            Some(Object::Tensor(t)) => Some(t),
            _ => None,
        }
    }

    /// Elements of a tuple or list.
    pub fn as_seq(&self, v: &Value) -> Option<&[Value]> {
        match self.obj(v) {
            Some(Object::Tuple(t)) | Some(Object::List(t)) => Some(t),
            _ => None,
        }
    }

    /// Short type name for messages (Python spelling where it exists).
    pub fn type_name(&self, v: &Value) -> &'static str {
        match v {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Obj(_) => match self.obj(v) {
                Some(Object::Tuple(_)) => "tuple",
                Some(Object::List(_)) => "list",
                Some(Object::Dict(_)) => "dict",
                Some(Object::Global(_)) => "class/function",
                Some(Object::Storage(_)) => "storage",
                Some(Object::Tensor(_)) => "tensor",
                None => "?",
            },
        }
    }
}

/// Runs the pickle that starts at `data[start]`; `what` names it in error messages.
pub fn unpickle(data: &[u8], start: usize, what: &str) -> Result<Unpickled> {
    let mut vm = Vm {
        data,
        pos: start,
        op_pos: start,
        what,
        stack: Vec::new(),
        metastack: Vec::new(),
        memo: HashMap::new(),
        heap: Vec::new(),
    };
    let root = vm.run()?;
    Ok(Unpickled {
        heap: vm.heap,
        root,
        end: vm.pos,
    })
}

struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    /// Offset of the opcode being executed (for messages).
    op_pos: usize,
    what: &'a str,
    stack: Vec<Value>,
    metastack: Vec<Vec<Value>>,
    memo: HashMap<u32, Value>,
    heap: Vec<Object>,
}

impl<'a> Vm<'a> {
    fn err(&self, msg: impl Into<String>) -> Error {
        Error::Pickle {
            what: self.what.to_string(),
            offset: self.op_pos,
            msg: msg.into(),
        }
    }

    // ---------------------------------------------------------------- byte readers

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| {
                self.err(format!(
                    "truncated: needs {n} more bytes, {} left",
                    self.data.len().saturating_sub(self.pos)
                ))
            })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A length prefix, checked against the bytes that remain (no huge allocations).
    fn len_from(&mut self, n: u64) -> Result<usize> {
        let left = self.data.len().saturating_sub(self.pos) as u64;
        if n > left {
            return Err(self.err(format!("truncated: length {n} but only {left} bytes left")));
        }
        Ok(n as usize)
    }

    /// A `\n`-terminated line (text opcodes), without the newline.
    fn line(&mut self) -> Result<&'a str> {
        let rest = &self.data[self.pos.min(self.data.len())..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.err("truncated: unterminated text argument"))?;
        let s =
            std::str::from_utf8(&rest[..n]).map_err(|_| self.err("text argument is not UTF-8"))?;
        self.pos += n + 1;
        Ok(s)
    }

    fn utf8(&self, b: &[u8]) -> Result<Value> {
        let s = std::str::from_utf8(b).map_err(|_| self.err("string is not valid UTF-8"))?;
        Ok(Value::Str(Rc::from(s)))
    }

    // ---------------------------------------------------------------- stack helpers

    fn push(&mut self, v: Value) {
        self.stack.push(v);
    }

    fn pop(&mut self) -> Result<Value> {
        self.stack.pop().ok_or_else(|| self.err("stack underflow"))
    }

    fn top(&self) -> Result<&Value> {
        self.stack.last().ok_or_else(|| self.err("stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let prev = self
            .metastack
            .pop()
            .ok_or_else(|| self.err("MARK expected but not found"))?;
        Ok(std::mem::replace(&mut self.stack, prev))
    }

    fn alloc(&mut self, o: Object) -> Value {
        self.heap.push(o);
        Value::Obj(self.heap.len() - 1)
    }

    fn memo_get(&self, i: u32) -> Result<Value> {
        self.memo
            .get(&i)
            .cloned()
            .ok_or_else(|| self.err(format!("memo key {i} is not defined")))
    }

    fn memo_put(&mut self, i: u32) -> Result<()> {
        let v = self.top()?.clone();
        self.memo.insert(i, v);
        Ok(())
    }

    fn tuple_of(&mut self, items: Vec<Value>) -> Value {
        self.alloc(Object::Tuple(items))
    }

    /// The dict at the top of the stack.
    fn top_dict_id(&self) -> Result<ObjId> {
        match self.top()? {
            Value::Obj(id) if matches!(self.heap.get(*id), Some(Object::Dict(_))) => Ok(*id),
            _ => Err(self.err("SETITEM(S) target is not a dict")),
        }
    }

    fn dict_insert(&mut self, id: ObjId, k: Value, v: Value) {
        if let Some(Object::Dict(d)) = self.heap.get_mut(id) {
            d.insert(k, v);
        }
    }

    fn top_list_id(&self) -> Result<ObjId> {
        match self.top()? {
            Value::Obj(id) if matches!(self.heap.get(*id), Some(Object::List(_))) => Ok(*id),
            _ => Err(self.err("APPEND(S) target is not a list")),
        }
    }

    fn list_extend(&mut self, id: ObjId, items: Vec<Value>) {
        if let Some(Object::List(l)) = self.heap.get_mut(id) {
            l.extend(items);
        }
    }

    fn int_from_le(&self, bytes: &[u8]) -> Value {
        if bytes.is_empty() {
            return Value::Int(0);
        }
        let neg = bytes[bytes.len() - 1] & 0x80 != 0;
        let fill = if neg { 0xff } else { 0 };
        // Fits in i64 if all bytes beyond the 8th are sign extension of byte 7.
        let fits = if bytes.len() <= 8 {
            true
        } else {
            let sign8 = bytes[7] & 0x80 != 0;
            sign8 == neg && bytes[8..].iter().all(|&b| b == fill)
        };
        if fits {
            let mut a = [fill; 8];
            let n = bytes.len().min(8);
            a[..n].copy_from_slice(&bytes[..n]);
            Value::Int(i64::from_le_bytes(a))
        } else {
            Value::BigInt(Rc::from(bytes))
        }
    }

    // ---------------------------------------------------------------- main loop

    fn run(&mut self) -> Result<Value> {
        loop {
            self.op_pos = self.pos;
            let op = self
                .u8()
                .map_err(|_| self.err("truncated: missing STOP opcode"))?;
            match op {
                0x80 => {
                    // PROTO
                    let p = self.u8()?;
                    if p > 5 {
                        return Err(self.err(format!("unsupported pickle protocol {p}")));
                    }
                }
                0x95 => {
                    // FRAME: an 8-byte length hint; the frame content follows inline.
                    self.u64()?;
                }
                b'.' => return self.pop(),
                b'(' => {
                    let cur = std::mem::take(&mut self.stack);
                    self.metastack.push(cur);
                }
                b'0' => {
                    if self.stack.is_empty() {
                        self.pop_mark()?;
                    } else {
                        self.pop()?;
                    }
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.push(v);
                }
                b'}' => {
                    let v = self.alloc(Object::Dict(Dict::default()));
                    self.push(v);
                }
                b']' => {
                    let v = self.alloc(Object::List(Vec::new()));
                    self.push(v);
                }
                b')' => {
                    let v = self.tuple_of(Vec::new());
                    self.push(v);
                }
                b't' => {
                    let items = self.pop_mark()?;
                    let v = self.tuple_of(items);
                    self.push(v);
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err(self.err("stack underflow"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    let v = self.tuple_of(items);
                    self.push(v);
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    let v = self.alloc(Object::List(items));
                    self.push(v);
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return Err(self.err("DICT with an odd number of items"));
                    }
                    let mut d = Dict::default();
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        d.insert(k, v);
                    }
                    let v = self.alloc(Object::Dict(d));
                    self.push(v);
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let id = self.top_dict_id()?;
                    self.dict_insert(id, k, v);
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return Err(self.err("SETITEMS with an odd number of items"));
                    }
                    let id = self.top_dict_id()?;
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        self.dict_insert(id, k, v);
                    }
                }
                b'a' => {
                    let v = self.pop()?;
                    let id = self.top_list_id()?;
                    self.list_extend(id, vec![v]);
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let id = self.top_list_id()?;
                    self.list_extend(id, items);
                }
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        b'X' => self.u32()? as u64,
                        0x8c => self.u8()? as u64,
                        _ => self.u64()?,
                    };
                    let n = self.len_from(n)?;
                    let b = self.take(n)?;
                    let v = self.utf8(b)?;
                    self.push(v);
                }
                b'T' | b'U' => {
                    // Python 2 str (BINSTRING / SHORT_BINSTRING): UTF-8 if valid, else latin-1.
                    let n = if op == b'T' {
                        let n = self.i32()?;
                        if n < 0 {
                            return Err(self.err("negative BINSTRING length"));
                        }
                        n as u64
                    } else {
                        self.u8()? as u64
                    };
                    let n = self.len_from(n)?;
                    let b = self.take(n)?;
                    let s: String = match std::str::from_utf8(b) {
                        Ok(s) => s.to_string(),
                        Err(_) => b.iter().map(|&c| c as char).collect(),
                    };
                    self.push(Value::Str(Rc::from(s)));
                }
                b'B' | b'C' | 0x8e => {
                    let n = match op {
                        b'B' => self.u32()? as u64,
                        b'C' => self.u8()? as u64,
                        _ => self.u64()?,
                    };
                    let n = self.len_from(n)?;
                    let b = self.take(n)?;
                    self.push(Value::Bytes(Rc::from(b)));
                }
                b'J' => {
                    let v = self.i32()?;
                    self.push(Value::Int(v as i64));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Value::Int(v as i64));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        self.u8()? as u64
                    } else {
                        let n = self.i32()?;
                        if n < 0 {
                            return Err(self.err("negative LONG4 length"));
                        }
                        n as u64
                    };
                    let n = self.len_from(n)?;
                    let b = self.take(n)?;
                    let v = self.int_from_le(b);
                    self.push(v);
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.array()?);
                    self.push(Value::Float(v));
                }
                0x88 => self.push(Value::Bool(true)),
                0x89 => self.push(Value::Bool(false)),
                b'N' => self.push(Value::None),
                b'q' => {
                    let i = self.u8()? as u32;
                    self.memo_put(i)?;
                }
                b'r' => {
                    let i = self.u32()?;
                    self.memo_put(i)?;
                }
                0x94 => {
                    let i =
                        u32::try_from(self.memo.len()).map_err(|_| self.err("memo overflow"))?;
                    self.memo_put(i)?;
                }
                b'p' => {
                    let line = self.line()?;
                    let i: u32 = line.trim().parse().map_err(|_| self.err("bad PUT index"))?;
                    self.memo_put(i)?;
                }
                b'h' => {
                    let i = self.u8()? as u32;
                    let v = self.memo_get(i)?;
                    self.push(v);
                }
                b'j' => {
                    let i = self.u32()?;
                    let v = self.memo_get(i)?;
                    self.push(v);
                }
                b'g' => {
                    let line = self.line()?;
                    let i: u32 = line.trim().parse().map_err(|_| self.err("bad GET index"))?;
                    let v = self.memo_get(i)?;
                    self.push(v);
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = Global::resolve(module, name)?;
                    let v = self.alloc(Object::Global(g));
                    self.push(v);
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (module, name) else {
                        return Err(self.err("STACK_GLOBAL operands are not strings"));
                    };
                    let g = Global::resolve(&module, &name)?;
                    let v = self.alloc(Object::Global(g));
                    self.push(v);
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = self.reduce(callable, args, 0)?;
                    self.push(v);
                }
                b'b' => {
                    let _state = self.pop()?;
                    match self.top()? {
                        // OrderedDict state carries `_metadata` (module versions); parameter
                        // state is irrelevant for the values. Both are dropped.
                        Value::Obj(id)
                            if matches!(
                                self.heap.get(*id),
                                Some(Object::Dict(_)) | Some(Object::Tensor(_))
                            ) => {}
                        _ => {
                            return Err(self.err("BUILD on an object that is not a dict or tensor"));
                        }
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let s = self.persistent_load(pid)?;
                    let v = self.alloc(Object::Storage(s));
                    self.push(v);
                }
                _ => {
                    return Err(Error::UnsupportedOpcode {
                        what: self.what.to_string(),
                        opcode: op,
                        offset: self.op_pos,
                    });
                }
            }
        }
    }

    // ---------------------------------------------------------------- "calls"

    fn int_arg(&self, v: &Value, what: &str) -> Result<i64> {
        match v {
            Value::Int(i) => Ok(*i),
            Value::Bool(b) => Ok(*b as i64),
            _ => Err(self.err(format!("{what} is not an int"))),
        }
    }

    fn seq_items(&self, v: &Value, what: &str) -> Result<Vec<Value>> {
        match v {
            Value::Obj(id) => match self.heap.get(*id) {
                Some(Object::Tuple(t)) | Some(Object::List(t)) => Ok(t.clone()),
                _ => Err(self.err(format!("{what} is not a tuple"))),
            },
            _ => Err(self.err(format!("{what} is not a tuple"))),
        }
    }

    fn int_seq(&self, v: &Value, what: &str) -> Result<Vec<i64>> {
        self.seq_items(v, what)?
            .iter()
            .map(|x| self.int_arg(x, what))
            .collect()
    }

    /// REDUCE: applies an allowlisted callable. Never calls anything dynamic.
    fn reduce(&mut self, callable: Value, args: Value, depth: u32) -> Result<Value> {
        let g = match &callable {
            Value::Obj(id) => match self.heap.get(*id) {
                Some(Object::Global(g)) => g.clone(),
                _ => return Err(self.err("REDUCE on an object that is not a callable")),
            },
            _ => return Err(self.err("REDUCE on an object that is not a callable")),
        };
        let args = self.seq_items(&args, "REDUCE arguments")?;
        let nargs = args.len();
        let arity = |ok: bool, name: &str| -> Result<()> {
            if ok {
                Ok(())
            } else {
                Err(self.err(format!("{name} called with {nargs} arguments")))
            }
        };
        match g {
            Global::OrderedDict => {
                arity(nargs <= 1, "OrderedDict")?;
                let mut d = Dict::default();
                if let Some(pairs) = args.first() {
                    for p in self.seq_items(pairs, "OrderedDict argument")? {
                        let kv = self.seq_items(&p, "OrderedDict item")?;
                        if kv.len() != 2 {
                            return Err(self.err("OrderedDict item is not a pair"));
                        }
                        d.insert(kv[0].clone(), kv[1].clone());
                    }
                }
                Ok(self.alloc(Object::Dict(d)))
            }
            Global::RebuildTensorV2 | Global::RebuildTensor => {
                if g == Global::RebuildTensorV2 {
                    arity(nargs == 6 || nargs == 7, "_rebuild_tensor_v2")?;
                } else {
                    arity(nargs == 4, "_rebuild_tensor")?;
                }
                let storage = match &args[0] {
                    Value::Obj(id) => match self.heap.get(*id) {
                        Some(Object::Storage(s)) => s.clone(),
                        _ => return Err(self.err("tensor storage is not a persistent storage")),
                    },
                    _ => return Err(self.err("tensor storage is not a persistent storage")),
                };
                let offset = self.int_arg(&args[1], "tensor storage offset")?;
                let shape = self.int_seq(&args[2], "tensor size")?;
                let stride = self.int_seq(&args[3], "tensor stride")?;
                Ok(self.alloc(Object::Tensor(TensorRef {
                    storage,
                    offset,
                    shape,
                    stride,
                })))
            }
            Global::RebuildParameter | Global::RebuildParameterWithState => {
                if g == Global::RebuildParameter {
                    arity(nargs == 3, "_rebuild_parameter")?;
                } else {
                    arity(nargs == 4, "_rebuild_parameter_with_state")?;
                }
                match &args[0] {
                    Value::Obj(id) if matches!(self.heap.get(*id), Some(Object::Tensor(_))) => {
                        Ok(args[0].clone())
                    }
                    _ => Err(self.err("parameter data is not a tensor")),
                }
            }
            Global::RebuildFromTypeV2 => {
                arity(nargs == 4, "_rebuild_from_type_v2")?;
                if depth > 0 {
                    return Err(self.err("nested _rebuild_from_type_v2"));
                }
                match &args[1] {
                    Value::Obj(id)
                        if matches!(
                            self.heap.get(*id),
                            Some(Object::Global(Global::TensorClass(_)))
                        ) => {}
                    _ => return Err(self.err("_rebuild_from_type_v2 target is not a tensor class")),
                }
                self.reduce(args[0].clone(), args[2].clone(), depth + 1)
            }
            Global::StorageType(_, name) | Global::TensorClass(name) => {
                Err(self.err(format!("refusing to call `{name}`")))
            }
        }
    }

    /// BINPERSID: `('storage', <StorageClass>, key, location, numel[, view_metadata])`.
    fn persistent_load(&mut self, pid: Value) -> Result<StorageRef> {
        let t = self.seq_items(&pid, "persistent id")?;
        match t.first() {
            Some(Value::Str(s)) if &**s == "storage" => {}
            _ => return Err(self.err("unsupported persistent id (expected a 'storage' tuple)")),
        }
        if t.len() != 5 && t.len() != 6 {
            return Err(self.err(format!("storage persistent id has {} fields", t.len())));
        }
        let (dtype, class) = match &t[1] {
            Value::Obj(id) => match self.heap.get(*id) {
                Some(Object::Global(Global::StorageType(d, n))) => (*d, n.clone()),
                _ => return Err(self.err("storage type is not a torch storage class")),
            },
            _ => return Err(self.err("storage type is not a torch storage class")),
        };
        let key = match &t[2] {
            Value::Str(s) => s.to_string(),
            Value::Int(i) => i.to_string(),
            _ => return Err(self.err("storage key is not a string")),
        };
        let numel = self.int_arg(&t[4], "storage size")?;
        let view = match t.get(5) {
            None | Some(Value::None) => None,
            Some(v) => {
                let vm = self.seq_items(v, "storage view metadata")?;
                if vm.len() != 3 {
                    return Err(self.err("storage view metadata is not (key, offset, size)"));
                }
                let vkey = match &vm[0] {
                    Value::Str(s) => s.to_string(),
                    Value::Int(i) => i.to_string(),
                    _ => return Err(self.err("storage view key is not a string")),
                };
                let off = self.int_arg(&vm[1], "storage view offset")?;
                let n = self.int_arg(&vm[2], "storage view size")?;
                Some((vkey, off, n))
            }
        };
        Ok(StorageRef {
            dtype,
            class,
            key,
            numel,
            view,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_globals_are_refused() {
        // GLOBAL 'os system'
        let p = b"\x80\x02cos\nsystem\nq\x00.";
        let e = unpickle(p, 0, "t").unwrap_err().to_string();
        assert_eq!(
            e,
            "refusing to load: the pickle references global `os.system`; only state-dict tensors are supported"
        );
        // STACK_GLOBAL 'builtins' 'eval'
        let p = b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93.";
        let e = unpickle(p, 0, "t").unwrap_err().to_string();
        assert!(e.contains("`builtins.eval`"), "{e}");
    }

    #[test]
    fn ints_and_memo() {
        // LONG1 10-byte legacy magic number
        let p = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.";
        let u = unpickle(p, 0, "t").unwrap();
        assert!(matches!(u.root, Value::BigInt(_)));
        assert_eq!(u.end, p.len());
        // LONG1 negative
        let u = unpickle(b"\x8a\x02\x00\xff.", 0, "t").unwrap();
        assert!(matches!(u.root, Value::Int(-256)));
        // dict mutated after memoization is seen through BINGET
        let p = b"}q\x00(X\x01\x00\x00\x00aK\x01u0h\x00.";
        let u = unpickle(p, 0, "t").unwrap();
        let d = u.as_dict(&u.root).unwrap();
        assert!(matches!(d.get_str("a"), Some(Value::Int(1))));
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let mut p = vec![b')'];
        p.extend(std::iter::repeat_n(0x85u8, 1_000_000));
        p.push(b'.');
        let u = unpickle(&p, 0, "t").unwrap();
        assert_eq!(u.heap.len(), 1_000_001);
    }

    #[test]
    fn truncated_lengths_are_errors() {
        let p = b"X\xff\xff\xff\xff";
        assert!(unpickle(p, 0, "t").is_err());
        let p = b"\x8d\xff\xff\xff\xff\xff\xff\xff\xff";
        assert!(unpickle(p, 0, "t").is_err());
        assert!(unpickle(b"", 0, "t").is_err());
        assert!(unpickle(b"(", 0, "t").is_err());
        assert!(unpickle(b"s.", 0, "t").is_err());
    }
}
