//! Rebuild the object when bpf-linker changes (a new LLVM means new codegen).
fn main() {
    if let Ok(path) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
