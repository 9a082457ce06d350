//! Just enough of a BTF reader to find the byte offset of a struct field by its path
//! (`io_ring_ctx` / `file_table.data.nodes`) in the running kernel's type information
//! (`/sys/kernel/btf/vmlinux`). The probe's programs follow a few kernel pointers with
//! `bpf_probe_read_kernel`; their offsets change between kernel builds, so they are looked
//! up here at load time rather than compiled in.
//!
//! Written by hand because aya-obj keeps BTF struct members crate-private and the one
//! maintained stand-alone BTF crate is LGPL; this reads only the header, the string
//! section and the type records (format: the kernel's Documentation/bpf/btf.rst).

use std::collections::HashMap;

const MAGIC: u16 = 0xeb9f;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

/// Parsed BTF: type records by id, and named structs.
pub struct Btf {
    data: Vec<u8>,
    /// Start of the string section in `data`.
    strings: usize,
    strings_len: usize,
    /// Byte position in `data` of type id `i` (index 0 is void and unused).
    types: Vec<usize>,
    /// Struct name -> type id (the first struct with members of that name).
    structs: HashMap<String, u32>,
    /// `btf_trace_*` typedef name -> type id: the raw tracepoints' prototypes.
    trace_typedefs: HashMap<String, u32>,
}

/// One type record's common header.
#[derive(Clone, Copy)]
struct TypeHead {
    name_off: u32,
    kind: u32,
    vlen: usize,
    kind_flag: bool,
    /// `size` or `type`, depending on the kind.
    size_or_type: u32,
    /// Position of the kind-specific data after the header.
    extra: usize,
}

impl Btf {
    /// Reads the running kernel's BTF.
    pub fn from_kernel() -> Result<Btf, String> {
        let path = "/sys/kernel/btf/vmlinux";
        let data = std::fs::read(path).map_err(|e| {
            format!("cannot read {path}: {e} (a kernel without CONFIG_DEBUG_INFO_BTF)")
        })?;
        Btf::parse(data)
    }

    /// Parses a raw (little-endian) BTF blob.
    pub fn parse(data: Vec<u8>) -> Result<Btf, String> {
        let u16_at = |d: &[u8], p: usize| d.get(p..p + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        if u16_at(&data, 0) != Some(MAGIC) {
            return Err("not BTF (bad magic, or a big-endian blob)".to_string());
        }
        let hdr = |i: usize| read_u32(&data, 8 + 4 * i).ok_or("BTF header truncated");
        let hdr_len = read_u32(&data, 4).ok_or("BTF header truncated")? as usize;
        let (type_off, type_len, str_off, str_len) = (hdr(0)?, hdr(1)?, hdr(2)?, hdr(3)?);
        let types_start = hdr_len + type_off as usize;
        let types_end = types_start + type_len as usize;
        let strings = hdr_len + str_off as usize;
        if types_end > data.len() || strings + str_len as usize > data.len() {
            return Err("BTF sections run past the end of the data".to_string());
        }
        let mut btf = Btf {
            data,
            strings,
            strings_len: str_len as usize,
            types: vec![0],
            structs: HashMap::new(),
            trace_typedefs: HashMap::new(),
        };
        let mut pos = types_start;
        while pos < types_end {
            let id = btf.types.len() as u32;
            btf.types.push(pos);
            let t = btf.head_at(pos).ok_or("BTF type record truncated")?;
            let extra = match t.kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * t.vlen,
                KIND_ENUM | KIND_FUNC_PROTO => 8 * t.vlen,
                _ => 0,
            };
            if t.kind == KIND_STRUCT && t.vlen > 0 {
                let name = btf.name(t.name_off).to_string();
                if !name.is_empty() {
                    btf.structs.entry(name).or_insert(id);
                }
            }
            if t.kind == KIND_TYPEDEF {
                let name = btf.name(t.name_off);
                if name.starts_with("btf_trace_") {
                    btf.trace_typedefs.insert(name.to_string(), id);
                }
            }
            pos = t.extra + extra;
        }
        Ok(btf)
    }

    fn head_at(&self, pos: usize) -> Option<TypeHead> {
        let info = read_u32(&self.data, pos + 4)?;
        Some(TypeHead {
            name_off: read_u32(&self.data, pos)?,
            kind: (info >> 24) & 0x1f,
            vlen: (info & 0xffff) as usize,
            kind_flag: info >> 31 == 1,
            size_or_type: read_u32(&self.data, pos + 8)?,
            extra: pos + 12,
        })
    }

    fn head(&self, id: u32) -> Option<TypeHead> {
        self.head_at(*self.types.get(id as usize)?)
    }

    fn name(&self, off: u32) -> &str {
        let start = self.strings + off as usize;
        let end = self.strings + self.strings_len;
        let Some(bytes) = self.data.get(start..end) else {
            return "";
        };
        let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        std::str::from_utf8(&bytes[..len]).unwrap_or("")
    }

    /// `id` with typedefs and qualifiers stripped.
    fn resolve(&self, mut id: u32) -> Option<TypeHead> {
        for _ in 0..32 {
            let t = self.head(id)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type;
                }
                _ => return Some(t),
            }
        }
        None
    }

    /// Member `name` of struct/union `t`, looking inside anonymous members too:
    /// (bit offset, member type id).
    fn member(&self, t: TypeHead, name: &str) -> Option<(u32, u32)> {
        if t.kind != KIND_STRUCT && t.kind != KIND_UNION {
            return None;
        }
        for i in 0..t.vlen {
            let at = t.extra + 12 * i;
            let m_name = read_u32(&self.data, at)?;
            let m_type = read_u32(&self.data, at + 4)?;
            let raw = read_u32(&self.data, at + 8)?;
            let bits = if t.kind_flag { raw & 0x00ff_ffff } else { raw };
            let m_name = self.name(m_name);
            if m_name == name {
                return Some((bits, m_type));
            }
            if m_name.is_empty()
                && let Some(inner) = self.resolve(m_type)
                && let Some((b, ty)) = self.member(inner, name)
            {
                return Some((bits + b, ty));
            }
        }
        None
    }

    /// Byte offset of `path` (fields separated by `.`, through nested structs) in struct
    /// `strukt`.
    pub fn offset(&self, strukt: &str, path: &str) -> Result<u32, String> {
        let id = *self
            .structs
            .get(strukt)
            .ok_or_else(|| format!("struct {strukt} not in the kernel's BTF"))?;
        let mut t = self
            .resolve(id)
            .ok_or_else(|| format!("struct {strukt}: bad BTF record"))?;
        let mut bits = 0;
        for (i, field) in path.split('.').enumerate() {
            let (b, ty) = self.member(t, field).ok_or_else(|| {
                format!("struct {strukt} has no field {path} on this kernel (at `{field}`)")
            })?;
            bits += b;
            if i + 1 < path.split('.').count() {
                t = self
                    .resolve(ty)
                    .ok_or_else(|| format!("{strukt}.{path}: bad BTF record"))?;
            }
        }
        if bits % 8 != 0 {
            return Err(format!("{strukt}.{path} is a bit field"));
        }
        Ok(bits / 8)
    }
}

impl Btf {
    /// The index among a raw tracepoint's arguments (its `TP_PROTO`, as a raw tracepoint
    /// program sees them) of the first one that points to `struct strukt`: from the
    /// `btf_trace_<event>` typedef, a pointer to a function whose first parameter is the
    /// tracepoint's private data.
    pub fn raw_tp_arg_pointing_to(&self, event: &str, strukt: &str) -> Result<u32, String> {
        let typedef = format!("btf_trace_{event}");
        let id = *self
            .trace_typedefs
            .get(&typedef)
            .ok_or_else(|| format!("{typedef} not in the kernel's BTF"))?;
        let ptr = self
            .resolve(id)
            .filter(|t| t.kind == KIND_PTR)
            .ok_or_else(|| format!("{typedef} is not a function pointer"))?;
        let proto = self
            .resolve(ptr.size_or_type)
            .filter(|t| t.kind == KIND_FUNC_PROTO)
            .ok_or_else(|| format!("{typedef} is not a function pointer"))?;
        for i in 1..proto.vlen {
            let ty = read_u32(&self.data, proto.extra + 8 * i + 4)
                .ok_or_else(|| format!("{typedef}: truncated BTF"))?;
            let points_to = self
                .resolve(ty)
                .filter(|t| t.kind == KIND_PTR)
                .and_then(|t| self.resolve(t.size_or_type));
            if let Some(target) = points_to
                && target.kind == KIND_STRUCT
                && self.name(target.name_off) == strukt
            {
                return Ok(i as u32 - 1);
            }
        }
        Err(format!(
            "no argument of tracepoint {event} points to struct {strukt}"
        ))
    }
}

fn read_u32(d: &[u8], p: usize) -> Option<u32> {
    d.get(p..p + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny BTF blob: `struct inner { int a; int b; }`,
    /// `struct outer { long x; struct inner in; union { int u; struct { int deep; }; }; }`.
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0a\0b\0inner\0outer\0x\0in\0u\0deep\0long\0btf_trace_ev\0";
        let s = |name: &str| -> u32 {
            let needle = format!("\0{name}\0");
            strings
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .unwrap() as u32
                + 1
        };
        let mut types: Vec<u32> = Vec::new();
        let head = |types: &mut Vec<u32>, name: u32, kind: u32, vlen: u32, st: u32| {
            types.extend([name, (kind << 24) | vlen, st]);
        };
        // 1: int (4 bytes)
        head(&mut types, s("int"), KIND_INT, 0, 4);
        types.push(32);
        // 2: struct inner { a@0, b@32 }
        head(&mut types, s("inner"), KIND_STRUCT, 2, 8);
        types.extend([s("a"), 1, 0, s("b"), 1, 32]);
        // 3: long
        head(&mut types, s("long"), KIND_INT, 0, 8);
        types.push(64);
        // 4: anonymous struct { deep@0 }
        head(&mut types, 0, KIND_STRUCT, 1, 4);
        types.extend([s("deep"), 1, 0]);
        // 5: anonymous union { u@0, <anon struct 4>@0 }
        head(&mut types, 0, KIND_UNION, 2, 4);
        types.extend([s("u"), 1, 0, 0, 4, 0]);
        // 6: typedef inner_t = inner  (name reused; only the kind matters)
        head(&mut types, s("in"), KIND_TYPEDEF, 0, 2);
        // 7: struct outer { x@0 (long), in@64 (typedef -> inner), <anon union>@128 }
        head(&mut types, s("outer"), KIND_STRUCT, 3, 20);
        types.extend([s("x"), 3, 0, s("in"), 6, 64, 0, 5, 128]);
        // 8: struct inner *
        head(&mut types, 0, KIND_PTR, 0, 2);
        // 9: void (*)(void *, long, struct inner *)  (void * as long here: only kinds matter)
        head(&mut types, 0, KIND_FUNC_PROTO, 3, 0);
        types.extend([0, 3, 0, 3, 0, 8]);
        // 10: pointer to it; 11: typedef btf_trace_ev
        head(&mut types, 0, KIND_PTR, 0, 9);
        head(&mut types, s("btf_trace_ev"), KIND_TYPEDEF, 0, 10);
        let type_bytes: Vec<u8> = types.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut out = Vec::new();
        out.extend(MAGIC.to_le_bytes());
        out.extend([1u8, 0]);
        for v in [24u32, 0, type_bytes.len() as u32, type_bytes.len() as u32] {
            out.extend(v.to_le_bytes());
        }
        out.extend((strings.len() as u32).to_le_bytes());
        out.extend(type_bytes);
        out.extend(strings);
        out
    }

    #[test]
    fn probe_btf_offsets_through_typedefs_and_anonymous_members() {
        let btf = Btf::parse(blob()).unwrap();
        assert_eq!(btf.offset("outer", "x"), Ok(0));
        assert_eq!(btf.offset("outer", "in.b"), Ok(12));
        assert_eq!(btf.offset("outer", "u"), Ok(16));
        assert_eq!(btf.offset("outer", "deep"), Ok(16));
        assert_eq!(btf.offset("inner", "b"), Ok(4));
        let err = btf.offset("outer", "in.c").unwrap_err();
        assert!(err.contains("no field in.c"), "{err}");
        assert!(
            btf.offset("nope", "x")
                .unwrap_err()
                .contains("not in the kernel")
        );
        assert!(Btf::parse(vec![0; 30]).is_err());
        // The raw tracepoint `ev` has arguments (long, struct inner *): the second points
        // to `inner`.
        assert_eq!(btf.raw_tp_arg_pointing_to("ev", "inner"), Ok(1));
        assert!(btf.raw_tp_arg_pointing_to("ev", "outer").is_err());
        assert!(btf.raw_tp_arg_pointing_to("nope", "inner").is_err());
    }

    /// On a kernel with BTF, the fields the probe follows are all found.
    #[test]
    fn probe_btf_of_this_kernel() {
        let Ok(btf) = Btf::from_kernel() else {
            eprintln!("SKIPPED: no readable /sys/kernel/btf/vmlinux");
            return;
        };
        for (s, f) in [
            ("file", "private_data"),
            ("socket", "sk"),
            ("sk_buff", "transport_header"),
            ("sock", "__sk_common.skc_num"),
            ("task_struct", "files"),
            ("io_uring_cqe", "res"),
        ] {
            let off = btf.offset(s, f);
            eprintln!("{s}.{f}: {off:?}");
            assert!(off.is_ok(), "{s}.{f}: {off:?}");
        }
        let cqe = btf.raw_tp_arg_pointing_to("io_uring_complete", "io_uring_cqe");
        eprintln!("io_uring_complete's cqe argument: {cqe:?}");
    }
}
