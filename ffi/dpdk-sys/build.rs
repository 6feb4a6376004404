//! Finds the system DPDK with pkg-config, compiles the static-inline shim and
//! generates the raw bindings with bindgen (layout tests kept).
use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=csrc/shim.c");
    println!("cargo:rerun-if-changed=csrc/imb.c");
    println!("cargo:rerun-if-changed=csrc/shim.h");
    println!("cargo:rerun-if-changed=csrc/wrapper.h");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    // Libraries and search paths come from libdpdk.pc, never from a list here.
    let lib = match pkg_config::Config::new()
        .atleast_version("22.11")
        .probe("libdpdk")
    {
        Ok(lib) => lib,
        Err(e) => panic!(
            "DPDK >= 22.11 not found with pkg-config ({e}). On Debian: apt-get install dpdk-dev libdpdk-dev (scripts/setup does this)"
        ),
    };
    // The net_ring PMD's rte_eth_from_rings() is the one driver API we call
    // directly (ring port pairs for tests and the bench); libdpdk.pc lists
    // drivers only for static linking, so ask for this one by name. EAL loads
    // the same file from its plugin directory, and the loader maps it once.
    println!("cargo:rustc-link-lib=dylib=rte_net_ring");
    // intel-ipsec-mb's direct GCM API (csrc/imb.c); DPDK's crypto PMDs load
    // the same library.
    println!("cargo:rustc-link-lib=dylib=IPSec_MB");

    // The full cflags, `-include rte_config.h` and `-march` among them: the
    // headers need both, and the shim must see the same configuration.
    let out = Command::new("pkg-config")
        .args(["--cflags", "libdpdk"])
        .output()
        .expect("run pkg-config --cflags libdpdk");
    assert!(out.status.success(), "pkg-config --cflags libdpdk failed");
    let cflags: Vec<String> = String::from_utf8(out.stdout)
        .expect("utf-8 cflags")
        .split_whitespace()
        .map(str::to_owned)
        .collect();

    let mut build = cc::Build::new();
    build.file("csrc/shim.c").file("csrc/imb.c").include("csrc").define("ALLOW_EXPERIMENTAL_API", None);
    for f in &cflags {
        build.flag(f);
    }
    // Debian's libdpdk.pc passes `-include rte_config.h` as two words.
    build.warnings(true).compile("esprit_dpdk_shim");

    let mut clang_args: Vec<String> = cflags.clone();
    clang_args.push("-DALLOW_EXPERIMENTAL_API".into());
    clang_args.push("-Icsrc".into());
    for p in &lib.include_paths {
        clang_args.push(format!("-I{}", p.display()));
    }

    let bindings = bindgen::Builder::default()
        .header("csrc/wrapper.h")
        .clang_args(&clang_args)
        .allowlist_function("rte_.*")
        .allowlist_function("esprit_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*")
        .allowlist_var("rte_.*")
        // Enums of DPDK are C enums; constants keep their C values.
        .default_enum_style(bindgen::EnumVariation::Consts)
        .derive_default(true)
        .derive_debug(true)
        .layout_tests(true)
        // Packed and over-aligned at once: Rust cannot express these, so
        // bindgen makes them opaque; we never touch their fields.
        .opaque_type("rte_l2tpv2_combined_msg_hdr")
        .opaque_type("rte_gtp_psc_.*")
        .opaque_type("rte_arp_hdr")
        .opaque_type("rte_arp_ipv4")
        .prepend_enum_name(false)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .expect("bindgen over the DPDK headers");

    let out_path = PathBuf::from(env::var("OUT_DIR").unwrap()).join("bindings.rs");
    bindings.write_to_file(&out_path).expect("write bindings.rs");
}
