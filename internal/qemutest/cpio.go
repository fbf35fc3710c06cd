package qemutest

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
)

// File is one entry of an initramfs.
type File struct {
	// Path inside the image, without a leading slash ("bin/busybox").
	Path string
	// Mode holds the permission bits; the type comes from the fields below.
	Mode os.FileMode
	// Source is a host file to copy (a regular file), or
	Source string
	// Data is the content of a regular file, or
	Data []byte
	// Symlink is the target of a symbolic link, or
	Symlink string
	// CharDev is set for a character device with major Major, minor Minor.
	CharDev      bool
	Major, Minor uint32
	// Dir makes a directory.
	Dir bool
}

// WriteInitramfs writes files as an uncompressed cpio archive in the "newc" format the kernel
// unpacks into its rootfs. Parent directories are created as needed. Device nodes need no
// privileges: they are just archive entries.
func WriteInitramfs(w io.Writer, files []File) error {
	bw := bufio.NewWriter(w)
	cw := &cpioWriter{w: bw, dirs: map[string]bool{}}
	sort.SliceStable(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	for _, f := range files {
		if err := cw.add(f); err != nil {
			return err
		}
	}
	if err := cw.entry("TRAILER!!!", 0, 0, 0, 0, nil); err != nil {
		return err
	}
	return bw.Flush()
}

type cpioWriter struct {
	w    io.Writer
	ino  uint32
	dirs map[string]bool
}

const (
	modeDir     = 0o040000
	modeRegular = 0o100000
	modeSymlink = 0o120000
	modeChar    = 0o020000
)

func (c *cpioWriter) mkdirs(p string) error {
	if p == "." || p == "" || p == "/" || c.dirs[p] {
		return nil
	}
	if err := c.mkdirs(path.Dir(p)); err != nil {
		return err
	}
	c.dirs[p] = true
	return c.entry(p, modeDir|0o755, 0, 0, 0, nil)
}

func (c *cpioWriter) add(f File) error {
	p := strings.TrimPrefix(path.Clean(f.Path), "/")
	if err := c.mkdirs(path.Dir(p)); err != nil {
		return err
	}
	perm := uint32(f.Mode.Perm())
	switch {
	case f.Dir:
		if c.dirs[p] {
			return nil
		}
		c.dirs[p] = true
		return c.entry(p, modeDir|perm, 0, 0, 0, nil)
	case f.Symlink != "":
		return c.entry(p, modeSymlink|0o777, 0, 0, 0, []byte(f.Symlink))
	case f.CharDev:
		return c.entry(p, modeChar|perm, f.Major, f.Minor, 0, nil)
	case f.Source != "":
		data, err := os.ReadFile(f.Source)
		if err != nil {
			return fmt.Errorf("initramfs: %s: %w", p, err)
		}
		if perm == 0 {
			st, err := os.Stat(f.Source)
			if err != nil {
				return err
			}
			perm = uint32(st.Mode().Perm())
		}
		return c.entry(p, modeRegular|perm, 0, 0, 0, data)
	default:
		return c.entry(p, modeRegular|perm, 0, 0, 0, f.Data)
	}
}

// entry writes one newc header, name and data, each padded to 4 bytes.
func (c *cpioWriter) entry(name string, mode, rmajor, rminor, _ uint32, data []byte) error {
	c.ino++
	nlink := uint32(1)
	if mode&0o170000 == modeDir {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rmajor, rminor, len(name)+1, 0)
	buf := make([]byte, 0, len(hdr)+len(name)+4)
	buf = append(buf, hdr...)
	buf = append(buf, name...)
	buf = append(buf, 0)
	buf = pad4(buf)
	if _, err := c.w.Write(buf); err != nil {
		return err
	}
	if len(data) == 0 {
		return nil
	}
	if _, err := c.w.Write(data); err != nil {
		return err
	}
	_, err := c.w.Write(make([]byte, (4-len(data)%4)%4))
	return err
}

func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}
