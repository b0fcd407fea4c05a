//! The sandbox ("pause") image, made by the project itself so that a fresh node
//! needs no registry: the upstream `registry.k8s.io/pause` is a tiny static program
//! that holds the pod's namespaces and sleeps; this is the same thing, assembled by
//! hand as a static ELF executable of a few hundred bytes (no C toolchain, no libc).
//!
//! The program installs handlers for SIGTERM and SIGINT that `exit_group(0)`, then
//! sleeps forever (`pause(2)` on x86_64, `ppoll(2)` with no descriptors on arm64,
//! which has no `pause`). A handler is needed because a PID 1 ignores signals it does
//! not handle; containerd stops sandboxes with SIGKILL anyway, so this only makes
//! `kill -TERM` of the sandbox behave like upstream pause's.
//!
//! The image is one uncompressed layer holding `/pause`, with `Entrypoint: ["/pause"]`,
//! built in memory (deterministically: the same bytes give the same digests) and
//! imported at every agent start with the `io.cri-containerd.pinned` label, so image
//! pruning never removes it. Its reference is [`IMAGE`], which the generated
//! containerd config names as `sandbox_image`.

use std::collections::BTreeMap;

use serde_json::json;

use super::images::{MemoryImage, PINNED_LABEL};

/// The sandbox image reference (never pulled: imported at start).
pub const IMAGE: &str = concat!("kube.local/pause:", env!("CARGO_PKG_VERSION"));

/// Where the ELF image is loaded (a fixed, non-PIE executable).
const BASE: u64 = 0x40_0000;
/// ELF header (64) plus one program header (56): the code starts here.
const CODE_OFFSET: u64 = 64 + 56;

/// The CPU architectures the pause program exists for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    /// This host's architecture, if the pause program exists for it.
    pub fn host() -> Option<Arch> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Arch::Amd64),
            "aarch64" => Some(Arch::Arm64),
            _ => None,
        }
    }

    /// The GOARCH name image configs use.
    pub fn oci_name(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }
}

/// The machine code, position-dependent only through the `sigaction` struct at its
/// end, whose handler and restorer fields are patched with absolute addresses.
/// Returns (code, offset of the handler, offset of the sigaction struct).
fn code(arch: Arch) -> (Vec<u8>, u64, u64) {
    match arch {
        // _start:  lea rsi,[rip+act]; xor edx,edx; mov r10d,8
        //          mov edi,15; mov eax,13; syscall      rt_sigaction(SIGTERM, &act, NULL, 8)
        //          mov edi,2;  mov eax,13; syscall      rt_sigaction(SIGINT, &act, NULL, 8)
        // loop:    mov eax,34; syscall; jmp loop        pause()
        // handler: xor edi,edi; mov eax,231; syscall    exit_group(0)
        // act:     {handler, SA_RESTORER, handler, mask 0}  (x86_64 requires a restorer;
        //          the handler never returns, so any address does)
        Arch::Amd64 => {
            let mut c = vec![
                0x48, 0x8d, 0x35, 0x39, 0x00, 0x00, 0x00, // lea rsi,[rip+0x39]
                0x31, 0xd2, // xor edx,edx
                0x41, 0xba, 0x08, 0x00, 0x00, 0x00, // mov r10d,8
                0xbf, 0x0f, 0x00, 0x00, 0x00, // mov edi,15
                0xb8, 0x0d, 0x00, 0x00, 0x00, // mov eax,13
                0x0f, 0x05, // syscall
                0xbf, 0x02, 0x00, 0x00, 0x00, // mov edi,2
                0xb8, 0x0d, 0x00, 0x00, 0x00, // mov eax,13
                0x0f, 0x05, // syscall
                0xb8, 0x22, 0x00, 0x00, 0x00, // loop: mov eax,34
                0x0f, 0x05, // syscall
                0xeb, 0xf7, // jmp loop
                0x31, 0xff, // handler: xor edi,edi
                0xb8, 0xe7, 0x00, 0x00, 0x00, // mov eax,231
                0x0f, 0x05, // syscall
                0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00, // nop (pad to 8)
            ];
            let handler = 0x30;
            let act = c.len() as u64;
            debug_assert_eq!(act, 0x40);
            c.extend_from_slice(&[0; 8]); // sa_handler (patched)
            c.extend_from_slice(&0x0400_0000u64.to_le_bytes()); // sa_flags = SA_RESTORER
            c.extend_from_slice(&[0; 8]); // sa_restorer (patched)
            c.extend_from_slice(&[0; 8]); // sa_mask
            (c, handler, act)
        }
        // _start:  mov x0,#15; adr x1,act; mov x2,#0; mov x3,#8; mov x8,#134; svc #0
        //          mov x0,#2; mov x8,#134; svc #0          rt_sigaction twice
        // loop:    mov x0..x4,#0; mov x8,#73; svc #0; b loop   ppoll(NULL,0,NULL,NULL,0)
        // handler: mov x0,#0; mov x8,#94; svc #0           exit_group(0)
        // act:     {handler, 0, 0, 0}
        Arch::Arm64 => {
            let words: [u32; 20] = [
                0xd280_01e0, // mov x0,#15
                0x1000_0261, // adr x1,act (+0x4c from here)
                0xd280_0002, // mov x2,#0
                0xd280_0103, // mov x3,#8
                0xd280_10c8, // mov x8,#134
                0xd400_0001, // svc #0
                0xd280_0040, // mov x0,#2
                0xd280_10c8, // mov x8,#134
                0xd400_0001, // svc #0
                0xd280_0000, // loop: mov x0,#0
                0xd280_0001, // mov x1,#0
                0xd280_0002, // mov x2,#0
                0xd280_0003, // mov x3,#0
                0xd280_0004, // mov x4,#0
                0xd280_0928, // mov x8,#73
                0xd400_0001, // svc #0
                0x17ff_fff9, // b loop
                0xd280_0000, // handler: mov x0,#0
                0xd280_0bc8, // mov x8,#94
                0xd400_0001, // svc #0
            ];
            let mut c: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            let handler = 0x44;
            let act = c.len() as u64;
            debug_assert_eq!(act, 0x50);
            c.extend_from_slice(&[0; 32]); // sa_handler (patched), flags, restorer, mask
            (c, handler, act)
        }
    }
}

/// The pause program: a complete static ELF executable for `arch`.
pub fn elf(arch: Arch) -> Vec<u8> {
    let (mut code, handler, act) = code(arch);
    let handler_addr = BASE + CODE_OFFSET + handler;
    let act = act as usize;
    code[act..act + 8].copy_from_slice(&handler_addr.to_le_bytes());
    if arch == Arch::Amd64 {
        code[act + 16..act + 24].copy_from_slice(&handler_addr.to_le_bytes());
    }
    let (machine, align): (u16, u64) = match arch {
        Arch::Amd64 => (62, 0x1000),
        Arch::Arm64 => (183, 0x1_0000),
    };
    let file_size = CODE_OFFSET + code.len() as u64;

    let mut f = Vec::with_capacity(file_size as usize);
    // ELF header.
    f.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]); // 64-bit, little endian, v1, SysV
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&2u16.to_le_bytes()); // e_type = ET_EXEC
    f.extend_from_slice(&machine.to_le_bytes());
    f.extend_from_slice(&1u32.to_le_bytes()); // e_version
    f.extend_from_slice(&(BASE + CODE_OFFSET).to_le_bytes()); // e_entry
    f.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    f.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    f.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    f.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
    f.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
    f.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    f.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
    f.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    f.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
    // One PT_LOAD segment, read + execute, mapping the whole file.
    f.extend_from_slice(&1u32.to_le_bytes()); // p_type = PT_LOAD
    f.extend_from_slice(&5u32.to_le_bytes()); // p_flags = R | X
    f.extend_from_slice(&0u64.to_le_bytes()); // p_offset
    f.extend_from_slice(&BASE.to_le_bytes()); // p_vaddr
    f.extend_from_slice(&BASE.to_le_bytes()); // p_paddr
    f.extend_from_slice(&file_size.to_le_bytes()); // p_filesz
    f.extend_from_slice(&file_size.to_le_bytes()); // p_memsz
    f.extend_from_slice(&align.to_le_bytes()); // p_align
    debug_assert_eq!(f.len() as u64, CODE_OFFSET);
    f.extend_from_slice(&code);
    f
}

/// A deterministic uncompressed tar holding `/pause` (mode 0755, root, mtime 0).
fn layer(arch: Arch) -> Vec<u8> {
    let program = elf(arch);
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o755);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(program.len() as u64);
    // In-memory writes cannot fail; a failure would only leave the layer empty.
    let _ = builder.append_data(&mut header, "pause", program.as_slice());
    builder.into_inner().unwrap_or_default()
}

/// The sandbox image for `arch`, ready for [`super::images::Importer::import_memory`].
pub fn image(arch: Arch) -> MemoryImage {
    let mut image = MemoryImage::oci(
        IMAGE,
        arch.oci_name(),
        json!({"Entrypoint": ["/pause"], "WorkingDir": "/"}),
        layer(arch),
    );
    image.labels = BTreeMap::from([(PINNED_LABEL.to_string(), "pinned".to_string())]);
    image
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, Instant};

    #[test]
    fn elf_headers() {
        for arch in [Arch::Amd64, Arch::Arm64] {
            let f = elf(arch);
            assert_eq!(&f[..4], b"\x7fELF");
            assert!(f.len() < 512, "{} bytes", f.len());
            let entry = u64::from_le_bytes(f[24..32].try_into().unwrap());
            assert_eq!(entry, BASE + CODE_OFFSET);
            let filesz = u64::from_le_bytes(f[96..104].try_into().unwrap());
            assert_eq!(filesz, f.len() as u64);
        }
    }

    #[test]
    fn image_is_deterministic() {
        let a = image(Arch::Amd64);
        let b = image(Arch::Amd64);
        assert_eq!(a.manifest, b.manifest);
        assert_eq!(a.layers[0].1, b.layers[0].1);
        assert_ne!(a.manifest, image(Arch::Arm64).manifest);
        let mut archive = tar::Archive::new(a.layers[0].1.as_slice());
        let entries: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(entries, ["pause"]);
        assert_eq!(a.labels.get(PINNED_LABEL).map(String::as_str), Some("pinned"));
    }

    /// Runs the host's pause program: it keeps running, and exits 0 on SIGTERM.
    #[test]
    fn pause_runs_and_exits_on_sigterm() {
        let Some(arch) = Arch::host() else { return };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pause");
        std::fs::write(&path, elf(arch)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut child = std::process::Command::new(&path).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(child.try_wait().unwrap().is_none(), "pause exited on its own");
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "pause ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(status.code(), Some(0));
    }
}
