//! The load-time rewrite (`buntime::wasm::rewrite_module`), differentially.
//!
//! `wasm-smith` generates a module that imports the Extism accessors
//! (`load_u8`, `load_u64`, `store_u8`, `store_u64`, `input_load_u8`,
//! `input_load_u64`). The rewrite must accept it (unless it exports the
//! arena's reserved name) and produce a valid module, and both must behave
//! the same:
//!
//! - the original runs with host accessors over a model of the arena (a
//!   byte vector with the arena's header);
//! - the rewritten module runs with the same host accessors over its
//!   exported arena memory, which its inline accessors also use.
//!
//! Both start from the same arena (a random used size, input copy and
//! bytes); then every exported function is called with zero arguments, in
//! order. Results, traps, the arena's bytes, and every exported global and
//! memory must match.
//!
//! Random modules seldom hit the arena: its offsets are a few thousand
//! out of 2^64. So half the inputs are instead a module of accessor calls
//! at offsets chosen around the arena's edges (its header, the end of the
//! bytes in use, the input copy's ends), built here, and compared the same
//! way.
#![no_main]

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::OnceLock;

use arbitrary::{Result, Unstructured};
use buntime::wasm::{ARENA_EXPORT, rewrite_module};
use libfuzzer_sys::fuzz_target;
use wasmtime::{
    Caller, Config, Engine, Extern, Instance, Linker, Module, Store, StoreLimits,
    StoreLimitsBuilder, Trap, Val,
};

/// The arena's header (see `runtime/src/wasm/arena.rs`): bytes in use, the
/// input copy's base and length; blocks start after it.
const HEADER_USED: usize = 0;
const HEADER_INPUT_BASE: usize = 8;
const HEADER_INPUT_LEN: usize = 16;
const RESERVED: usize = 32;
/// The arena memory's size: one page, as the rewrite declares it.
const ARENA_BYTES: usize = 65_536;

const ACCESSORS: &str = r#"(module
    (import "extism:host/env" "load_u8" (func (param i64) (result i32)))
    (import "extism:host/env" "load_u64" (func (param i64) (result i64)))
    (import "extism:host/env" "store_u8" (func (param i64 i32)))
    (import "extism:host/env" "store_u64" (func (param i64 i64)))
    (import "extism:host/env" "input_load_u8" (func (param i64) (result i32)))
    (import "extism:host/env" "input_load_u64" (func (param i64) (result i64))))"#;

fuzz_target!(|data: &[u8]| {
    let _ = check(&mut Unstructured::new(data));
});

fn check(u: &mut Unstructured<'_>) -> Result<()> {
    let focused = u.arbitrary::<bool>()?;
    let arena = initial_arena(u)?;
    let original = if focused {
        accesses(u, &arena)?
    } else {
        let mut module = wasm_smith::Module::new(smith_config(), u)?;
        if module.ensure_termination(1_000).is_err() {
            return Ok(());
        }
        module.to_bytes()
    };
    if wasmparser::Validator::new()
        .validate_all(&original)
        .is_err()
    {
        return Ok(());
    }
    let rewritten = match rewrite_module(&original) {
        Ok(wasm) => wasm,
        Err(e) if e.to_string().contains(ARENA_EXPORT) => return Ok(()),
        Err(e) => panic!("a valid module was refused by the rewrite: {e}"),
    };
    if let Err(e) = wasmparser::Validator::new().validate_all(&rewritten) {
        panic!("the rewritten module is invalid: {e}");
    }
    let engine = engine();
    let Ok(original_module) = Module::new(engine, &original) else {
        return Ok(());
    };
    let rewritten_module = Module::new(engine, &rewritten)
        .unwrap_or_else(|e| panic!("the original compiles, the rewritten one does not: {e:?}"));
    let (Some(a), Some(b)) = (
        run(&original_module, false, &arena),
        run(&rewritten_module, true, &arena),
    ) else {
        return Ok(());
    };
    assert_eq!(a.instantiated, b.instantiated, "instantiation");
    assert_eq!(a.calls, b.calls, "calls");
    assert!(a.arena == b.arena, "the arenas differ");
    assert_eq!(a.globals, b.globals, "exported globals");
    assert_eq!(a.memories, b.memories, "exported memories");
    Ok(())
}

fn smith_config() -> wasm_smith::Config {
    static IMPORTS: OnceLock<Vec<u8>> = OnceLock::new();
    let imports = IMPORTS.get_or_init(|| wat::parse_str(ACCESSORS).expect("the accessor imports"));
    wasm_smith::Config {
        available_imports: Some(imports.clone()),
        export_everything: true,
        allow_start_export: true,
        canonicalize_nans: true,
        min_funcs: 1,
        max_funcs: 20,
        max_imports: 12,
        max_globals: 20,
        max_memories: 2,
        max_tables: 2,
        max_table_elements: 1_000,
        max_memory32_bytes: 1 << 20,
        max_data_segments: 10,
        max_element_segments: 10,
        // Features the engine compiles deterministically and the server
        // enables; the rest are off.
        memory64_enabled: false,
        threads_enabled: false,
        shared_everything_threads_enabled: false,
        relaxed_simd_enabled: false,
        gc_enabled: false,
        exceptions_enabled: false,
        custom_page_sizes_enabled: false,
        wide_arithmetic_enabled: false,
        ..wasm_smith::Config::default()
    }
}

/// A module whose exported `run` makes accessor calls at offsets around the
/// edges of `arena`, folding every value it loads into its result.
fn accesses(u: &mut Unstructured<'_>, arena: &[u8]) -> Result<Vec<u8>> {
    use wasm_encoder::{
        CodeSection, EntityType, ExportKind, ExportSection, Function, FunctionSection,
        ImportSection, Instruction as I, TypeSection, ValType,
    };
    const NAMES: [&str; 6] = [
        "load_u8",
        "load_u64",
        "store_u8",
        "store_u64",
        "input_load_u8",
        "input_load_u64",
    ];
    let (used, base, len) = (
        get(arena, HEADER_USED) as i64,
        get(arena, HEADER_INPUT_BASE) as i64,
        get(arena, HEADER_INPUT_LEN) as i64,
    );
    let edges = [0, RESERVED as i64, used, base, len, ARENA_BYTES as i64];
    let mut types = TypeSection::new();
    types.ty().function([ValType::I64], [ValType::I32]);
    types.ty().function([ValType::I64], [ValType::I64]);
    types.ty().function([ValType::I64, ValType::I32], []);
    types.ty().function([ValType::I64, ValType::I64], []);
    types.ty().function([], [ValType::I64]);
    let mut imports = ImportSection::new();
    for (i, name) in NAMES.iter().enumerate() {
        let ty = [0, 1, 2, 3, 0, 1][i];
        imports.import("extism:host/env", name, EntityType::Function(ty));
    }
    let mut functions = FunctionSection::new();
    functions.function(4);
    let mut exports = ExportSection::new();
    exports.export("run", ExportKind::Func, NAMES.len() as u32);
    let mut body = Function::new([(1, ValType::I64)]);
    for _ in 0..u.int_in_range(1..=64)? {
        let accessor = u.int_in_range(0..=5u32)?;
        let offset = match u.int_in_range(0..=3)? {
            0 => u.arbitrary::<i64>()?,
            1 => -i64::from(u.int_in_range(1..=9u8)?),
            _ => *u.choose(&edges)? + i64::from(u.int_in_range(-9..=9i8)?),
        };
        body.instruction(&I::I64Const(offset));
        match accessor {
            2 => body.instruction(&I::I32Const(u.arbitrary()?)),
            3 => body.instruction(&I::I64Const(u.arbitrary()?)),
            _ => &mut body,
        };
        body.instruction(&I::Call(accessor));
        if matches!(accessor, 0 | 4) {
            body.instruction(&I::I64ExtendI32U);
        }
        if !matches!(accessor, 2 | 3) {
            // acc = rotl(acc, 7) ^ value
            body.instruction(&I::LocalGet(0));
            body.instruction(&I::I64Const(7));
            body.instruction(&I::I64Rotl);
            body.instruction(&I::I64Xor);
            body.instruction(&I::LocalSet(0));
        }
    }
    body.instruction(&I::LocalGet(0));
    body.instruction(&I::End);
    let mut code = CodeSection::new();
    code.function(&body);
    let mut module = wasm_encoder::Module::new();
    module
        .section(&types)
        .section(&imports)
        .section(&functions)
        .section(&exports)
        .section(&code);
    Ok(module.finish())
}

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = Config::new();
        // The differential is of the rewrite, not of the optimiser; an
        // unoptimised compile is several times faster per input.
        config.cranelift_opt_level(wasmtime::OptLevel::None);
        config.cranelift_nan_canonicalization(true);
        config.wasm_multi_memory(true);
        Engine::new(&config).expect("the fuzzing engine")
    })
}

/// An arena with some bytes in use and an input copy among them.
fn initial_arena(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    // Bytes past the ones in use are stale in a real arena (freed blocks):
    // a pattern, so an access that strays past `used` reads something.
    let mut arena: Vec<u8> = (0..ARENA_BYTES).map(|i| 0xA5 ^ i as u8).collect();
    arena[..RESERVED].fill(0);
    let extra = u.int_in_range(0..=2_048usize)?;
    let used = RESERVED + extra;
    // The bytes in use from a seed, so the input's bytes go to the module.
    let mut seed: u64 = u.arbitrary::<u64>()? | 1;
    for byte in &mut arena[RESERVED..used] {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        *byte = seed as u8;
    }
    let base = RESERVED + u.int_in_range(0..=extra)?;
    let len = u.int_in_range(0..=used - base)?;
    set(&mut arena, HEADER_USED, used as u64);
    set(&mut arena, HEADER_INPUT_BASE, base as u64);
    set(&mut arena, HEADER_INPUT_LEN, len as u64);
    Ok(arena)
}

/// The arena as the rewrite's data segment leaves it at instantiation.
fn empty_arena() -> Vec<u8> {
    let mut arena = vec![0u8; ARENA_BYTES];
    set(&mut arena, HEADER_USED, RESERVED as u64);
    arena
}

fn set(arena: &mut [u8], at: usize, value: u64) {
    arena[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

fn get(arena: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&arena[at..at + 8]);
    u64::from_le_bytes(word)
}

struct Host {
    /// The arena of the original module; the rewritten one's is its memory.
    model: Vec<u8>,
    rewritten: bool,
    limits: StoreLimits,
}

fn with_arena<R>(caller: &mut Caller<'_, Host>, f: impl FnOnce(&mut [u8]) -> R) -> R {
    if caller.data().rewritten {
        let memory = caller
            .get_export(ARENA_EXPORT)
            .and_then(Extern::into_memory)
            .expect("the rewritten module exports its arena");
        f(&mut memory.data_mut(caller)[..ARENA_BYTES])
    } else {
        f(&mut caller.data_mut().model)
    }
}

/// Where a block access of `width` bytes at `offset` lands, if it is inside
/// the blocks in use (the Extism kernel answers anything else with 0, or
/// ignores the store).
fn in_blocks(arena: &[u8], offset: i64, width: usize) -> Option<usize> {
    let (offset, used) = (offset as u64, get(arena, HEADER_USED));
    (offset >= RESERVED as u64 && offset <= used - width as u64).then_some(offset as usize)
}

/// Where an input read of `width` bytes at `offset` lands, if it is inside
/// the input.
fn in_input(arena: &[u8], offset: i64, width: usize) -> Option<usize> {
    let (offset, len) = (offset as u64, get(arena, HEADER_INPUT_LEN));
    (offset < len && len - offset >= width as u64)
        .then(|| (get(arena, HEADER_INPUT_BASE) + offset) as usize)
}

fn read(arena: &[u8], at: Option<usize>, width: usize) -> u64 {
    at.map_or(0, |at| {
        let mut word = [0u8; 8];
        word[..width].copy_from_slice(&arena[at..at + width]);
        u64::from_le_bytes(word)
    })
}

fn linker() -> Linker<Host> {
    const ENV: &str = "extism:host/env";
    let mut linker = Linker::new(engine());
    let result: wasmtime::Result<()> = (|| {
        linker.func_wrap(ENV, "load_u8", |mut c: Caller<'_, Host>, o: i64| {
            with_arena(&mut c, |a| read(a, in_blocks(a, o, 1), 1) as i32)
        })?;
        linker.func_wrap(ENV, "load_u64", |mut c: Caller<'_, Host>, o: i64| {
            with_arena(&mut c, |a| read(a, in_blocks(a, o, 8), 8) as i64)
        })?;
        linker.func_wrap(ENV, "input_load_u8", |mut c: Caller<'_, Host>, o: i64| {
            with_arena(&mut c, |a| read(a, in_input(a, o, 1), 1) as i32)
        })?;
        linker.func_wrap(ENV, "input_load_u64", |mut c: Caller<'_, Host>, o: i64| {
            with_arena(&mut c, |a| read(a, in_input(a, o, 8), 8) as i64)
        })?;
        linker.func_wrap(
            ENV,
            "store_u8",
            |mut c: Caller<'_, Host>, o: i64, v: i32| {
                with_arena(&mut c, |a| {
                    if let Some(at) = in_blocks(a, o, 1) {
                        a[at] = v as u8;
                    }
                })
            },
        )?;
        linker.func_wrap(
            ENV,
            "store_u64",
            |mut c: Caller<'_, Host>, o: i64, v: i64| {
                with_arena(&mut c, |a| {
                    if let Some(at) = in_blocks(a, o, 8) {
                        a[at..at + 8].copy_from_slice(&v.to_le_bytes());
                    }
                })
            },
        )?;
        Ok(())
    })();
    result.expect("the accessors link");
    linker
}

/// What a module did, in terms both versions must agree on.
struct Outcome {
    instantiated: Result<(), String>,
    calls: Vec<(String, Result<Vec<String>, String>)>,
    arena: Vec<u8>,
    globals: Vec<(String, String)>,
    memories: Vec<(String, usize, u64)>,
}

/// Runs `module`; `None` when the run says nothing about the rewrite (the
/// stack ran out, which the rewrite's extra frames may change).
fn run(module: &Module, rewritten: bool, arena: &[u8]) -> Option<Outcome> {
    let host = Host {
        model: empty_arena(),
        rewritten,
        limits: StoreLimitsBuilder::new()
            .memory_size(16 << 20)
            .table_elements(10_000)
            .build(),
    };
    let mut store = Store::new(engine(), host);
    store.limiter(|h| &mut h.limits);
    let linker = linker();
    let instance = match linker.instantiate(&mut store, module) {
        Ok(instance) => instance,
        Err(e) => {
            let trap = trap_text(&e)?;
            return Some(Outcome {
                instantiated: Err(trap),
                calls: Vec::new(),
                arena: Vec::new(),
                globals: Vec::new(),
                memories: Vec::new(),
            });
        }
    };
    write_arena(&mut store, instance, rewritten, arena);
    let mut calls = Vec::new();
    let exports: Vec<String> = module.exports().map(|e| e.name().to_owned()).collect();
    for name in &exports {
        let Some(func) = instance.get_func(&mut store, name) else {
            continue;
        };
        let ty = func.ty(&store);
        let Some(params) = ty.params().map(|t| Val::default_for_ty(&t)).collect() else {
            continue;
        };
        let params: Vec<Val> = params;
        let mut results: Vec<Val> = ty.results().map(|_| Val::I32(0)).collect();
        let outcome = match func.call(&mut store, &params, &mut results) {
            Ok(()) => Ok(results.iter().map(val_text).collect()),
            Err(e) => Err(trap_text(&e)?),
        };
        calls.push((name.clone(), outcome));
    }
    let arena = read_arena(&mut store, instance, rewritten);
    let mut globals = Vec::new();
    let mut memories = Vec::new();
    for name in exports.iter().filter(|n| *n != ARENA_EXPORT) {
        if let Some(global) = instance.get_global(&mut store, name) {
            globals.push((name.clone(), val_text(&global.get(&mut store))));
        } else if let Some(memory) = instance.get_memory(&mut store, name) {
            let data = memory.data(&store);
            let mut hash = DefaultHasher::new();
            data.hash(&mut hash);
            memories.push((name.clone(), data.len(), hash.finish()));
        }
    }
    Some(Outcome {
        instantiated: Ok(()),
        calls,
        arena,
        globals,
        memories,
    })
}

fn write_arena(store: &mut Store<Host>, instance: Instance, rewritten: bool, arena: &[u8]) {
    if rewritten {
        let memory = instance
            .get_memory(&mut *store, ARENA_EXPORT)
            .expect("the rewritten module exports its arena");
        memory.data_mut(&mut *store)[..ARENA_BYTES].copy_from_slice(arena);
    } else {
        store.data_mut().model.copy_from_slice(arena);
    }
}

fn read_arena(store: &mut Store<Host>, instance: Instance, rewritten: bool) -> Vec<u8> {
    if rewritten {
        let memory = instance
            .get_memory(&mut *store, ARENA_EXPORT)
            .expect("the rewritten module exports its arena");
        memory.data(&*store)[..ARENA_BYTES].to_vec()
    } else {
        store.data().model.clone()
    }
}

/// A trap as text; `None` for a stack overflow (inconclusive).
fn trap_text(e: &wasmtime::Error) -> Option<String> {
    match e.downcast_ref::<Trap>() {
        Some(Trap::StackOverflow) => None,
        Some(trap) => Some(format!("trap: {trap:?}")),
        None => Some(format!("error: {e}")),
    }
}

fn val_text(v: &Val) -> String {
    match v {
        Val::I32(x) => format!("i32 {x}"),
        Val::I64(x) => format!("i64 {x}"),
        Val::F32(bits) => format!("f32 {bits:#x}"),
        Val::F64(bits) => format!("f64 {bits:#x}"),
        Val::V128(x) => format!("v128 {:#x}", x.as_u128()),
        Val::FuncRef(f) => format!("funcref {}", f.is_some()),
        Val::ExternRef(r) => format!("externref {}", r.is_some()),
        Val::AnyRef(r) => format!("anyref {}", r.is_some()),
        Val::ExnRef(r) => format!("exnref {}", r.is_some()),
        Val::ContRef(r) => format!("contref {}", r.is_some()),
    }
}
