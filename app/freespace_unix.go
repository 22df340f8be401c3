//go:build unix

package app

import "syscall"

// freeSpace is the space left to an unprivileged writer on the file system
// that holds dir, in bytes.
func freeSpace(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}
