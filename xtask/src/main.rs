//! `cargo xtask`: set up the machine, build, run, demonstrate, test and
//! benchmark `lb`. One module per subcommand.

mod bench;
mod build;
mod cmd;
mod demo;
mod demo_ha;
mod man;
mod package;
mod run;
mod setup;
mod test;
mod test_arm64;
mod test_package;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Build, demonstrate, test and benchmark lb")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what building and testing need (idempotent, fast when done).
    Setup,
    /// Build the release agent (and with it the eBPF object); --target
    /// aarch64-unknown-linux-gnu cross-builds it for arm64.
    Build(build::Options),
    /// Build, then run `lb` with the given arguments.
    Run(run::Options),
    /// Everything: fmt, clippy, unit and BPF test-run tests, end-to-end tests,
    /// a benchmark smoke run.
    Test(test::Options),
    /// The seed 001 (NAT) or seed 000 (DR) setup in namespaces, end to end.
    Demo(demo::Options),
    /// Requests/s and p99 through the VIP against direct; Maglev build time.
    Bench(bench::Options),
    /// The Debian package (.deb, cargo-deb) for amd64 and/or arm64.
    Package(package::Options),
    /// Slow, not part of `test`: the amd64 .deb installed into a clean
    /// debootstrap root and purged, checked at each step.
    TestPackage,
    /// Man pages and shell completions of lb, into target/assets/.
    Man(man::Options),
    /// Slow, not part of `test`: the arm64 .deb in an emulated arm64 VM
    /// (qemu TCG, systemd), NAT and DR end to end in generic XDP mode, and
    /// lb against IPVS there.
    TestArm64(test_arm64::Options),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup => setup::setup(),
        Command::Build(o) => setup::setup().and_then(|()| build::build(o)),
        Command::Run(o) => setup::setup().and_then(|()| run::run(o)),
        Command::Test(o) => setup::setup().and_then(|()| test::test(o)),
        Command::Demo(o) => setup::setup().and_then(|()| demo::demo(o)),
        Command::Bench(o) => setup::setup().and_then(|()| bench::bench(o)),
        Command::Package(o) => setup::setup().and_then(|()| package::package(o)),
        Command::TestPackage => setup::setup().and_then(|()| test_package::test_package()),
        Command::Man(o) => man::man(o),
        Command::TestArm64(o) => setup::setup().and_then(|()| test_arm64::test_arm64(o)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
