// Package qemutest boots a Debian kernel in qemu (TCG, no KVM needed) with a busybox initramfs
// and runs a static Go test binary inside it, so tests that need kernel features this machine
// lacks (IPVS) run against a real kernel. The kernel package is fetched once with apt-get download
// and unpacked, never installed, into a cache directory.
package qemutest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Kernel is an unpacked kernel image package.
type Kernel struct {
	// Package is the Debian package, e.g. linux-image-6.1.0-56-amd64.
	Package string
	// Release is the kernel release (uname -r), e.g. 6.1.0-56-amd64.
	Release string
	// Root is where the package is unpacked.
	Root string
	// VMLinux is the uncompressed ELF kernel, bootable by qemu's -kernel through PVH.
	VMLinux string
}

// ModulesDir returns the directory holding the kernel's modules.
func (k Kernel) ModulesDir() string { return filepath.Join(k.Root, "lib", "modules", k.Release) }

// DebianKernelPackage returns the image package linux-image-amd64 depends on
// (linux-image-<release>-amd64), asking apt-cache.
func DebianKernelPackage(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "depends", "linux-image-amd64").Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache depends linux-image-amd64: %w", err)
	}
	m := regexp.MustCompile(`Depends: (linux-image-[0-9][^\s]*)`).FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("apt-cache depends linux-image-amd64: no linux-image-<release> dependency in %q", out)
	}
	return string(m[1]), nil
}

// FetchKernel returns the kernel package pkg unpacked under cacheDir/pkg, downloading it with
// `apt-get download` and extracting vmlinux the first time. Progress goes to log.
func FetchKernel(ctx context.Context, cacheDir, pkg string, log io.Writer) (Kernel, error) {
	dir, err := filepath.Abs(filepath.Join(cacheDir, pkg))
	if err != nil {
		return Kernel{}, err
	}
	k := Kernel{Package: pkg, Release: strings.TrimPrefix(pkg, "linux-image-"), Root: filepath.Join(dir, "root"), VMLinux: filepath.Join(dir, "vmlinux")}
	if _, err := os.Stat(k.VMLinux); err == nil {
		return k, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return k, err
	}
	debs, _ := filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
	if len(debs) == 0 {
		fmt.Fprintf(log, "qemutest: apt-get download %s into %s\n", pkg, dir)
		cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", pkg)
		cmd.Dir, cmd.Stdout, cmd.Stderr = dir, log, log
		if err := cmd.Run(); err != nil {
			return k, fmt.Errorf("apt-get download %s: %w", pkg, err)
		}
		if debs, _ = filepath.Glob(filepath.Join(dir, pkg+"_*.deb")); len(debs) == 0 {
			return k, fmt.Errorf("apt-get download %s: no .deb in %s", pkg, dir)
		}
	}
	_ = os.RemoveAll(k.Root)
	fmt.Fprintf(log, "qemutest: dpkg-deb -x %s\n", filepath.Base(debs[0]))
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], k.Root).CombinedOutput(); err != nil {
		return k, fmt.Errorf("dpkg-deb -x %s: %w: %s", debs[0], err, out)
	}
	vmlinuz := filepath.Join(k.Root, "boot", "vmlinuz-"+k.Release)
	if err := ExtractVMLinux(ctx, vmlinuz, k.VMLinux); err != nil {
		return k, err
	}
	return k, nil
}

// Compressed-payload magics a bzImage may carry, as scripts/extract-vmlinux looks for them.
var magics = []struct {
	name  string
	magic []byte
}{
	{"xz", []byte("\xfd7zXZ\x00")},
	{"zstd", []byte("\x28\xb5\x2f\xfd")},
	{"gzip", []byte("\x1f\x8b\x08")},
}

// ExtractVMLinux finds the compressed kernel inside the bzImage vmlinuz, decompresses it (gzip in
// Go, xz and zstd with the xz and zstd programs) and writes the ELF to out.
func ExtractVMLinux(ctx context.Context, vmlinuz, out string) error {
	img, err := os.ReadFile(vmlinuz)
	if err != nil {
		return fmt.Errorf("extract vmlinux: %w", err)
	}
	var tried []string
	for _, m := range magics {
		for off := 0; ; {
			i := bytes.Index(img[off:], m.magic)
			if i < 0 {
				break
			}
			off += i
			elfData, err := decompress(ctx, m.name, img[off:])
			if err == nil && bytes.HasPrefix(elfData, []byte("\x7fELF")) {
				tmp := out + ".tmp"
				if err := os.WriteFile(tmp, elfData, 0o644); err != nil {
					return err
				}
				return os.Rename(tmp, out)
			}
			tried = append(tried, fmt.Sprintf("%s@%d", m.name, off))
			off++
		}
	}
	return fmt.Errorf("extract vmlinux from %s: no compressed ELF found (tried %v)", vmlinuz, tried)
}

func decompress(ctx context.Context, kind string, data []byte) ([]byte, error) {
	switch kind {
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, err
		}
		zr.Multistream(false)
		return io.ReadAll(zr)
	case "xz":
		return pipe(ctx, data, "xz", "-dc", "--single-stream")
	case "zstd":
		return pipe(ctx, data, "zstd", "-dcq")
	}
	return nil, fmt.Errorf("unknown compression %s", kind)
}

// pipe runs a decompressor on data. Trailing bytes after the stream make some exit non-zero, so
// the output is returned whenever there is some.
func pipe(ctx context.Context, data []byte, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = bytes.NewReader(data)
	var out bytes.Buffer
	cmd.Stdout = &out
	err := cmd.Run()
	if out.Len() > 0 {
		return out.Bytes(), nil
	}
	return nil, err
}

// ModuleDeps reads the "depends=" field of every module under the kernel's module directory and
// returns, for each module name (underscores, no .ko), its path relative to the module directory
// and its direct dependencies.
func ModuleDeps(k Kernel, names ...string) (paths map[string]string, deps map[string][]string, err error) {
	paths, deps = map[string]string{}, map[string][]string{}
	all := map[string]string{}
	err = filepath.WalkDir(k.ModulesDir(), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".ko") {
			return err
		}
		rel, _ := filepath.Rel(k.ModulesDir(), p)
		all[strings.ReplaceAll(strings.TrimSuffix(d.Name(), ".ko"), "-", "_")] = rel
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	var visit func(string) error
	visit = func(n string) error {
		if _, ok := paths[n]; ok {
			return nil
		}
		rel, ok := all[n]
		if !ok {
			return fmt.Errorf("module %s not found under %s", n, k.ModulesDir())
		}
		paths[n] = rel
		d, err := modinfoDepends(filepath.Join(k.ModulesDir(), rel))
		if err != nil {
			return err
		}
		deps[n] = d
		for _, dep := range d {
			if err := visit(dep); err != nil {
				return err
			}
		}
		return nil
	}
	for _, n := range names {
		if err := visit(n); err != nil {
			return nil, nil, err
		}
	}
	return paths, deps, nil
}

func modinfoDepends(ko string) ([]string, error) {
	f, err := elf.Open(ko)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", ko, err)
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return nil, fmt.Errorf("module %s: no .modinfo", ko)
	}
	data, err := s.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}

// ModulesDep renders a modules.dep for paths/deps as returned by ModuleDeps: each module followed
// by all its dependencies, transitively, in the order modprobe loads them from the end.
func ModulesDep(paths map[string]string, deps map[string][]string) []byte {
	var names []string
	for n := range paths {
		names = append(names, n)
	}
	sort.Strings(names)
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	for _, n := range names {
		// Post-order gives a load order (dependencies first); modules.dep lists it reversed.
		var load []string
		seen := map[string]bool{}
		var walk func(string)
		walk = func(m string) {
			for _, d := range deps[m] {
				if !seen[d] {
					seen[d] = true
					walk(d)
					load = append(load, paths[d])
				}
			}
		}
		walk(n)
		fmt.Fprintf(w, "%s:", paths[n])
		for i := len(load) - 1; i >= 0; i-- {
			fmt.Fprintf(w, " %s", load[i])
		}
		fmt.Fprintln(w)
	}
	_ = w.Flush()
	return b.Bytes()
}

// IsStatic reports whether the ELF at path has no interpreter (is statically linked).
func IsStatic(path string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false, nil
		}
	}
	return true, nil
}

// ErrNoVerdict means the VM stopped without reporting a test verdict (kernel panic, timeout).
var ErrNoVerdict = errors.New("qemutest: the VM reported no verdict")
