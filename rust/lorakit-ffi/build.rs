//! Generates include/lorakit.h with cbindgen. The header is checked in, so it is written only when its content
//! changes (keeps mtimes stable for CGO and keeps `git diff` clean on unchanged sources).
//! On Linux the shared library also gets a versioned soname, so installed programs keep loading the ABI they
//! were linked against when a newer major version is installed next to it.

use std::path::PathBuf;

fn main() {
    let crate_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    set_soname();

    let config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("valid cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate the C header");

    let mut rendered = Vec::new();
    bindings.write(&mut rendered);
    let header = crate_dir.join("include").join("lorakit.h");
    if std::fs::read(&header).ok().as_deref() != Some(rendered.as_slice()) {
        std::fs::create_dir_all(header.parent().expect("header has a parent"))
            .expect("create include/");
        std::fs::write(&header, &rendered).expect("write include/lorakit.h");
    }
}

/// `liblorakit.so.<major>`: the name `make install-lib` installs and the dynamic loader looks up.
fn set_soname() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        let major =
            std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets CARGO_PKG_VERSION_MAJOR");
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,liblorakit.so.{major}");
    }
}
