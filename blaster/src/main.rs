//! The `blaster` binary: a thin shell over the library, which owns `run`.

fn main() {
    std::process::exit(blaster::cli::main());
}
