//! The load-time rewrite that gives a guest its memory-block arena and
//! compiles the Extism ABI's small accessors inline.
//!
//! Guests built with the official Extism PDKs move data eight bytes per host
//! call: reading a 1 KiB input is 128 `input_load_u64` calls, writing a 1 KiB
//! output 128 `store_u64` calls. Each wasm→host transition costs a few
//! nanoseconds in wasmtime, and those transitions were most of the time of a
//! small call. So before compiling, Buntime adds to every module:
//!
//! - a second linear memory, exported as [`ARENA_EXPORT`], that holds the
//!   arena's bytes. The host still owns the arena (it allocates and frees
//!   blocks, and keeps the block table in Rust); the memory is only where the
//!   bytes live. Its first bytes are a header the host keeps current (see
//!   `arena.rs`): how many bytes are in use and where the input's copy is.
//! - for each accessor the module imports (`load_u8`, `load_u64`, `store_u8`,
//!   `store_u64`, `input_load_u8`, `input_load_u64`), a small function that
//!   checks that the access is inside the blocks (or the input's copy) and
//!   does the load or store itself, and calls the original import for
//!   anything else — so the host, which follows the Extism kernel, answers
//!   every other case (a load outside the arena is 0, a store ignored). Every
//!   reference to the import is redirected to it.
//!
//! New functions, the memory and the export are appended, so no existing
//! index moves and custom sections (names, producers) stay valid as they are.
//! The guest's own code cannot name the new memory: the module is validated
//! before it is rewritten, so none of its instructions, segments or exports
//! refers to a memory index past its own — only the functions added here
//! touch the arena memory. (The host relies on that: it keeps a raw view of
//! the memory, see `arena.rs`.)

use std::convert::Infallible;

use wasm_encoder::reencode::{self, Reencode};
use wasm_encoder::{
    BlockType, CodeSection, ConstExpr, DataSection, ExportKind, ExportSection, Function,
    FunctionSection, Instruction, MemArg, MemorySection, MemoryType, SectionId, ValType,
};

use super::abi::ENV_NAMESPACE;
use super::arena::{HEADER_INPUT_BASE, HEADER_INPUT_LEN, HEADER_USED, RESERVED};

/// The export under which the arena's memory is found after instantiation.
pub const ARENA_EXPORT: &str = "__buntime_arena";

/// Part of the compiled-module cache key: bump it whenever the rewrite's
/// output changes, so modules rewritten by an older binary are not reused.
/// (2: the cache holds only rewritten modules.)
pub(crate) const VERSION: u32 = 2;

/// The accessors compiled inline, by import name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accessor {
    LoadU8,
    LoadU64,
    StoreU8,
    StoreU64,
    InputLoadU8,
    InputLoadU64,
}

impl Accessor {
    /// Bytes accessed.
    fn width(self) -> i64 {
        match self {
            Self::LoadU8 | Self::StoreU8 | Self::InputLoadU8 => 1,
            Self::LoadU64 | Self::StoreU64 | Self::InputLoadU64 => 8,
        }
    }

    /// Whether it reads the input's copy rather than a block.
    fn reads_input(self) -> bool {
        matches!(self, Self::InputLoadU8 | Self::InputLoadU64)
    }

    /// Whether it takes a value to store (its second parameter).
    fn stores(self) -> bool {
        matches!(self, Self::StoreU8 | Self::StoreU64)
    }

    fn from_import(name: &str) -> Option<Self> {
        Some(match name {
            "load_u8" => Self::LoadU8,
            "load_u64" => Self::LoadU64,
            "store_u8" => Self::StoreU8,
            "store_u64" => Self::StoreU64,
            "input_load_u8" => Self::InputLoadU8,
            "input_load_u64" => Self::InputLoadU64,
            _ => return None,
        })
    }
}

/// An imported accessor and the function that replaces it.
#[derive(Debug)]
struct Replaced {
    accessor: Accessor,
    import: u32,
    type_index: u32,
}

/// Why a module could not be rewritten: it is not a valid core module (and
/// compiling it reports the precise error), or it exports the arena's
/// reserved name (it then runs as it is, without the arena memory).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RewriteError(String);

/// Returns `wasm` with the arena memory and the inline accessors added.
///
/// ```
/// let wasm = wat::parse_str(r#"(module
///     (import "extism:host/env" "load_u64" (func $load (param i64) (result i64)))
///     (func (export "f") (result i64) (call $load (i64.const 32))))"#).unwrap();
/// let out = buntime::wasm::rewrite_module(&wasm).unwrap();
/// wasmparser::Validator::new().validate_all(&out).unwrap();
/// assert!(out.windows(15).any(|w| w == buntime::wasm::ARENA_EXPORT.as_bytes()));
/// ```
pub fn rewrite_module(wasm: &[u8]) -> Result<Vec<u8>, RewriteError> {
    // Invalid input could name the memory index the arena is about to take.
    wasmparser::Validator::new()
        .validate_all(wasm)
        .map_err(|e| RewriteError(e.to_string()))?;
    // The host hands the memory exported under this name its arena; a
    // module's own export of it would be ambiguous (and a duplicate).
    if exports_arena_name(wasm) {
        return Err(RewriteError(format!(
            "the module exports `{ARENA_EXPORT}`, a name reserved for Buntime's arena memory; rename that export"
        )));
    }
    let mut rewriter = Rewriter::default();
    let mut module = wasm_encoder::Module::new();
    rewriter
        .parse_core_module(&mut module, wasmparser::Parser::new(0), wasm)
        .map_err(|e| RewriteError(e.to_string()))?;
    Ok(module.finish())
}

/// Whether a (valid) module exports something named [`ARENA_EXPORT`].
fn exports_arena_name(wasm: &[u8]) -> bool {
    wasmparser::Parser::new(0)
        .parse_all(wasm)
        .filter_map(|payload| match payload {
            Ok(wasmparser::Payload::ExportSection(exports)) => Some(exports),
            _ => None,
        })
        .flat_map(|exports| exports.into_iter().flatten())
        .any(|export| export.name == ARENA_EXPORT)
}

/// The state gathered while the module's sections go by, in order.
#[derive(Debug, Default)]
struct Rewriter {
    imported_functions: u32,
    imported_memories: u32,
    defined_memories: u32,
    /// In import order; the `i`-th is replaced by function `first_added + i`.
    replaced: Vec<Replaced>,
    /// Index of the first appended function, once the number of defined
    /// functions is known (the function section, or its absence).
    first_added: u32,
    emitted: Emitted,
}

/// Which of the sections this rewrite extends have been written.
#[derive(Debug, Default)]
struct Emitted {
    function: bool,
    memory: bool,
    export: bool,
    code: bool,
    data: bool,
}

impl Rewriter {
    fn arena_memory(&self) -> u32 {
        self.imported_memories + self.defined_memories
    }

    /// Fixes the replacement functions' indices: right after the module's own.
    fn plan(&mut self, defined_functions: u32) {
        self.first_added = self.imported_functions + defined_functions;
    }

    fn add_function_types(&self, functions: &mut FunctionSection) {
        for r in &self.replaced {
            functions.function(r.type_index);
        }
    }

    fn add_memory(&self, memories: &mut MemorySection) {
        // One page to start; the host grows it, within the guest's memory
        // limit, when a block does not fit.
        memories.memory(MemoryType {
            minimum: 1,
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
    }

    /// The header's initial contents, as a data segment. Besides starting
    /// the arena empty, it gives the memory a copy-on-write image: wasmtime
    /// runs a module's data initialization as code at every instantiation
    /// (slower, and it costs fuel) as soon as one memory has no image.
    fn add_data(&self, data: &mut DataSection) {
        let mut header = [0u8; RESERVED];
        header[HEADER_USED as usize..][..8].copy_from_slice(&(RESERVED as u64).to_le_bytes());
        data.active(self.arena_memory(), &ConstExpr::i32_const(0), header);
    }

    fn add_export(&self, exports: &mut ExportSection) {
        exports.export(ARENA_EXPORT, ExportKind::Memory, self.arena_memory());
    }

    fn add_bodies(&self, code: &mut CodeSection) {
        for r in &self.replaced {
            code.function(&accessor_body(r, self.arena_memory()));
        }
    }

    /// Writes the sections this rewrite needs that the module lacks, at the
    /// place the binary format orders them.
    fn fill_missing(&mut self, module: &mut wasm_encoder::Module, before: Option<SectionId>) {
        let reached = |id: SectionId| before.is_none_or(|b| order(b) > order(id));
        if !self.emitted.function && reached(SectionId::Function) {
            self.plan(0);
            let mut functions = FunctionSection::new();
            self.add_function_types(&mut functions);
            if !functions.is_empty() {
                module.section(&functions);
            }
            self.emitted.function = true;
        }
        if !self.emitted.memory && reached(SectionId::Memory) {
            let mut memories = MemorySection::new();
            self.add_memory(&mut memories);
            module.section(&memories);
            self.emitted.memory = true;
        }
        if !self.emitted.export && reached(SectionId::Export) {
            let mut exports = ExportSection::new();
            self.add_export(&mut exports);
            module.section(&exports);
            self.emitted.export = true;
        }
        if !self.emitted.code && reached(SectionId::Code) {
            let mut code = CodeSection::new();
            self.add_bodies(&mut code);
            if !code.is_empty() {
                module.section(&code);
            }
            self.emitted.code = true;
        }
        if !self.emitted.data && before.is_none() {
            let mut data = DataSection::new();
            self.add_data(&mut data);
            module.section(&data);
            self.emitted.data = true;
        }
    }
}

/// Position of a section in a module (the binary format's order, which is
/// not the order of the ids).
fn order(id: SectionId) -> u8 {
    match id {
        SectionId::Custom => 0,
        SectionId::Type => 1,
        SectionId::Import => 2,
        SectionId::Function => 3,
        SectionId::Table => 4,
        SectionId::Memory => 5,
        SectionId::Tag => 6,
        SectionId::Global => 7,
        SectionId::Export => 8,
        SectionId::Start => 9,
        SectionId::Element => 10,
        SectionId::DataCount => 11,
        SectionId::Code => 12,
        SectionId::Data => 13,
    }
}

type Reencoded<T> = std::result::Result<T, reencode::Error<Infallible>>;

impl Reencode for Rewriter {
    type Error = Infallible;

    fn function_index(&mut self, func: u32) -> Reencoded<u32> {
        // At most six entries: a scan beats hashing.
        Ok(match self.replaced.iter().position(|r| r.import == func) {
            Some(i) => self.first_added + i as u32,
            None => func,
        })
    }

    fn intersperse_section_hook(
        &mut self,
        module: &mut wasm_encoder::Module,
        _after: Option<SectionId>,
        before: Option<SectionId>,
    ) -> Reencoded<()> {
        self.fill_missing(module, before);
        Ok(())
    }

    fn parse_import_section(
        &mut self,
        imports: &mut wasm_encoder::ImportSection,
        section: wasmparser::ImportSectionReader<'_>,
    ) -> Reencoded<()> {
        for import in section.clone().into_imports() {
            let import = import?;
            match import.ty {
                wasmparser::TypeRef::Func(type_index) => {
                    if import.module == ENV_NAMESPACE
                        && let Some(accessor) = Accessor::from_import(import.name)
                    {
                        self.replaced.push(Replaced {
                            accessor,
                            import: self.imported_functions,
                            type_index,
                        });
                    }
                    self.imported_functions += 1;
                }
                wasmparser::TypeRef::Memory(_) => self.imported_memories += 1,
                _ => {}
            }
        }
        reencode::utils::parse_import_section(self, imports, section)
    }

    fn parse_function_section(
        &mut self,
        functions: &mut FunctionSection,
        section: wasmparser::FunctionSectionReader<'_>,
    ) -> Reencoded<()> {
        self.plan(section.count());
        reencode::utils::parse_function_section(self, functions, section)?;
        self.add_function_types(functions);
        self.emitted.function = true;
        Ok(())
    }

    fn parse_memory_section(
        &mut self,
        memories: &mut MemorySection,
        section: wasmparser::MemorySectionReader<'_>,
    ) -> Reencoded<()> {
        self.defined_memories = section.count();
        reencode::utils::parse_memory_section(self, memories, section)?;
        self.add_memory(memories);
        self.emitted.memory = true;
        Ok(())
    }

    fn parse_export_section(
        &mut self,
        exports: &mut ExportSection,
        section: wasmparser::ExportSectionReader<'_>,
    ) -> Reencoded<()> {
        reencode::utils::parse_export_section(self, exports, section)?;
        self.add_export(exports);
        self.emitted.export = true;
        Ok(())
    }

    fn parse_code_section(
        &mut self,
        code: &mut CodeSection,
        section: wasmparser::CodeSectionReader<'_>,
    ) -> Reencoded<()> {
        reencode::utils::parse_code_section(self, code, section)?;
        self.add_bodies(code);
        self.emitted.code = true;
        Ok(())
    }

    fn parse_data_section(
        &mut self,
        data: &mut DataSection,
        section: wasmparser::DataSectionReader<'_>,
    ) -> Reencoded<()> {
        reencode::utils::parse_data_section(self, data, section)?;
        self.add_data(data);
        self.emitted.data = true;
        Ok(())
    }

    /// One more data segment: the arena header's.
    fn data_count(&mut self, count: u32) -> Reencoded<u32> {
        Ok(count + 1)
    }

    // Custom sections are copied as they are: no index moved, and re-encoding
    // the name section would map the imports' names onto their replacements.
    fn parse_custom_section(
        &mut self,
        module: &mut wasm_encoder::Module,
        section: wasmparser::CustomSectionReader<'_>,
    ) -> Reencoded<()> {
        module.section(&reencode::utils::custom_section(self, section));
        Ok(())
    }
}

/// Reads the header field at `offset` (an `i64`) from the arena memory.
fn header(f: &mut Function, memory: u32, offset: u64) {
    f.instruction(&Instruction::I32Const(0));
    f.instruction(&Instruction::I64Load(MemArg {
        offset,
        align: 3,
        memory_index: memory,
    }));
}

/// The body that replaces one accessor. Parameter 0 is the offset (`i64`);
/// stores take the value as parameter 1. The range taken here (the blocks,
/// or the input's copy) is one the host answers the same way; anything else
/// goes to the host, which answers as the Extism kernel does.
fn accessor_body(r: &Replaced, memory: u32) -> Function {
    use Instruction as I;
    let mut f = Function::new([]);
    let byte = |memory_index| MemArg {
        offset: 0,
        align: 0,
        memory_index,
    };
    let (width, input) = (r.accessor.width(), r.accessor.reads_input());
    if input {
        // off <u len && len - off >=u width; len is 0 until the input is copied.
        f.instruction(&I::LocalGet(0));
        header(&mut f, memory, HEADER_INPUT_LEN);
        f.instruction(&I::I64LtU);
        header(&mut f, memory, HEADER_INPUT_LEN);
        f.instruction(&I::LocalGet(0));
        f.instruction(&I::I64Sub);
        f.instruction(&I::I64Const(width));
        f.instruction(&I::I64GeU);
        f.instruction(&I::I32And);
    } else {
        // off >=u RESERVED && off <=u used - width (used >= RESERVED > width).
        f.instruction(&I::LocalGet(0));
        f.instruction(&I::I64Const(RESERVED as i64));
        f.instruction(&I::I64GeU);
        f.instruction(&I::LocalGet(0));
        header(&mut f, memory, HEADER_USED);
        f.instruction(&I::I64Const(width));
        f.instruction(&I::I64Sub);
        f.instruction(&I::I64LeU);
        f.instruction(&I::I32And);
    }
    let result = match r.accessor {
        Accessor::StoreU8 | Accessor::StoreU64 => BlockType::Empty,
        Accessor::LoadU8 | Accessor::InputLoadU8 => BlockType::Result(ValType::I32),
        Accessor::LoadU64 | Accessor::InputLoadU64 => BlockType::Result(ValType::I64),
    };
    f.instruction(&I::If(result));
    // The address: the offset itself, or the input copy's base plus it. Both
    // are below the memory's size (at most 4 GiB), so they fit an i32.
    if input {
        header(&mut f, memory, HEADER_INPUT_BASE);
        f.instruction(&I::LocalGet(0));
        f.instruction(&I::I64Add);
    } else {
        f.instruction(&I::LocalGet(0));
    }
    f.instruction(&I::I32WrapI64);
    match r.accessor {
        Accessor::LoadU8 | Accessor::InputLoadU8 => {
            f.instruction(&I::I32Load8U(byte(memory)));
        }
        Accessor::LoadU64 | Accessor::InputLoadU64 => {
            f.instruction(&I::I64Load(byte(memory)));
        }
        Accessor::StoreU8 => {
            f.instruction(&I::LocalGet(1));
            f.instruction(&I::I32Store8(byte(memory)));
        }
        Accessor::StoreU64 => {
            f.instruction(&I::LocalGet(1));
            f.instruction(&I::I64Store(byte(memory)));
        }
    }
    f.instruction(&I::Else);
    f.instruction(&I::LocalGet(0));
    if r.accessor.stores() {
        f.instruction(&I::LocalGet(1));
    }
    f.instruction(&I::Call(r.import));
    f.instruction(&I::End);
    f.instruction(&I::End);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(wat: &str) -> Vec<u8> {
        let out = rewrite_module(&wat::parse_str(wat).unwrap()).unwrap();
        wasmparser::Validator::new()
            .validate_all(&out)
            .expect("the rewritten module validates");
        out
    }

    fn exports(wasm: &[u8]) -> Vec<(String, wasmparser::ExternalKind, u32)> {
        let mut out = Vec::new();
        for payload in wasmparser::Parser::new(0).parse_all(wasm) {
            if let Ok(wasmparser::Payload::ExportSection(s)) = payload {
                for e in s {
                    let e = e.unwrap();
                    out.push((e.name.to_owned(), e.kind, e.index));
                }
            }
        }
        out
    }

    #[test]
    fn a_module_without_imports_gets_the_arena_memory() {
        let out = rewrite("(module)");
        assert_eq!(
            exports(&out),
            [(ARENA_EXPORT.to_owned(), wasmparser::ExternalKind::Memory, 0)]
        );
    }

    #[test]
    fn the_arena_memory_comes_after_the_guests_own() {
        let out = rewrite(r#"(module (memory (export "memory") 1))"#);
        let e = exports(&out);
        assert!(e.contains(&("memory".into(), wasmparser::ExternalKind::Memory, 0)));
        assert!(e.contains(&(ARENA_EXPORT.into(), wasmparser::ExternalKind::Memory, 1)));
    }

    #[test]
    fn references_to_an_accessor_are_redirected_and_others_kept() {
        let out = rewrite(
            r#"(module
                (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
                (import "extism:host/env" "store_u64" (func $store (param i64 i64)))
                (table 2 funcref)
                (elem (i32.const 0) func $store $alloc)
                (func (export "f") (param i64)
                    (call $store (local.get 0) (call $alloc (i64.const 8))))
                (export "store" (func $store)))"#,
        );
        // Imports 0 and 1, the module's function 2, the replacement 3.
        let e = exports(&out);
        assert!(e.contains(&("store".into(), wasmparser::ExternalKind::Func, 3)));
        assert!(e.contains(&("f".into(), wasmparser::ExternalKind::Func, 2)));
    }

    #[test]
    fn accessors_of_other_namespaces_are_left_alone() {
        let out = rewrite(
            r#"(module
                (import "env" "load_u64" (func $l (param i64) (result i64)))
                (export "l" (func $l)))"#,
        );
        assert!(exports(&out).contains(&("l".into(), wasmparser::ExternalKind::Func, 0)));
    }

    #[test]
    fn a_module_exporting_the_arena_name_is_refused() {
        let wasm =
            wat::parse_str(format!(r#"(module (memory (export "{ARENA_EXPORT}") 1))"#)).unwrap();
        let err = rewrite_module(&wasm).expect_err("refused");
        assert!(err.to_string().contains("reserved"), "{err}");
    }

    #[test]
    fn what_is_not_a_core_module_is_an_error() {
        assert!(rewrite_module(b"not wasm").is_err());
    }

    #[test]
    fn a_module_naming_a_memory_it_lacks_is_refused_not_given_the_arena() {
        // Memory 1 does not exist here; after the rewrite it would be the arena.
        let wasm = wat::parse_str(
            r#"(module (memory 1)
                (func (export "peek") (result i64) (i64.load 1 (i32.const 0))))"#,
        )
        .unwrap();
        assert!(rewrite_module(&wasm).is_err());
    }
}
