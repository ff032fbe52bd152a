package engines

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// No image registry is reachable: every image is built here from the
// busybox rootfs that scripts/mkrootfs.sh writes.
const (
	imageName = "localhost/runh-busybox:latest"
	pauseName = "localhost/runh-pause:latest" // CRI sandbox image
)

func prepareImages() error {
	rootfsDir = filepath.Join(baseDir, "rootfs")
	if out, err := exec.Command(filepath.Join(repoRoot, "scripts/mkrootfs.sh"), rootfsDir).CombinedOutput(); err != nil {
		return fmt.Errorf("mkrootfs: %v: %s", err, out)
	}
	imageTar = filepath.Join(baseDir, "busybox.tar")
	if out, err := exec.Command("tar", "-C", rootfsDir, "--numeric-owner", "-cf", imageTar, ".").CombinedOutput(); err != nil {
		return fmt.Errorf("tar rootfs: %v: %s", err, out)
	}
	return nil
}

// ociArchive writes an OCI image layout tarball holding two images over the
// one busybox layer: imageName (CMD sh) and pauseName (sleeps for ever, as
// a pod sandbox must). The layer is an uncompressed tar, which is valid OCI.
func ociArchive(path string) error {
	layer, err := os.ReadFile(imageTar)
	if err != nil {
		return err
	}
	blobs := map[string][]byte{}
	put := func(b []byte) string {
		sum := sha256.Sum256(b)
		d := "sha256:" + hex.EncodeToString(sum[:])
		blobs[d] = b
		return d
	}
	layerDigest := put(layer)
	type desc struct {
		MediaType   string            `json:"mediaType"`
		Digest      string            `json:"digest"`
		Size        int               `json:"size"`
		Platform    map[string]string `json:"platform,omitempty"`
		Annotations map[string]string `json:"annotations,omitempty"`
	}
	var manifests []desc
	for _, img := range []struct {
		name string
		cfg  map[string]any
	}{
		{imageName, map[string]any{"Cmd": []string{"/bin/sh"}}},
		{pauseName, map[string]any{"Entrypoint": []string{"/bin/sleep", "2147483647"}}},
	} {
		img.cfg["Env"] = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
		cfg, _ := json.Marshal(map[string]any{
			"created":      time.Unix(0, 0).UTC(),
			"architecture": "amd64",
			"os":           "linux",
			"config":       img.cfg,
			"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{layerDigest}},
		})
		cfgDigest := put(cfg)
		man, _ := json.Marshal(map[string]any{
			"schemaVersion": 2,
			"mediaType":     "application/vnd.oci.image.manifest.v1+json",
			"config":        desc{MediaType: "application/vnd.oci.image.config.v1+json", Digest: cfgDigest, Size: len(cfg)},
			"layers":        []desc{{MediaType: "application/vnd.oci.image.layer.v1.tar", Digest: layerDigest, Size: len(layer)}},
		})
		manifests = append(manifests, desc{
			MediaType: "application/vnd.oci.image.manifest.v1+json",
			Digest:    put(man), Size: len(man),
			Platform:    map[string]string{"architecture": "amd64", "os": "linux"},
			Annotations: map[string]string{"io.containerd.image.name": img.name, "org.opencontainers.image.ref.name": "latest"},
		})
	}
	index, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": manifests})

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	add := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	if err := add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	if err := add("index.json", index); err != nil {
		return err
	}
	for d, b := range blobs {
		if err := add("blobs/sha256/"+d[len("sha256:"):], b); err != nil {
			return err
		}
	}
	return tw.Close()
}
