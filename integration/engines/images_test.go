package engines

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
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
// a pod sandbox must).
func ociArchive(path string) error {
	return writeOCIArchive(path, []ociImage{
		{imageName, imageTar, map[string]any{"Cmd": []string{"/bin/sh"}}},
		{pauseName, imageTar, map[string]any{"Entrypoint": []string{"/bin/sleep", "2147483647"}}},
	})
}

// ociImage is one image of an OCI archive: its name, its only layer (an
// uncompressed root filesystem tarball, which is valid OCI) and its config.
type ociImage struct {
	name, layer string
	config      map[string]any
}

// writeOCIArchive writes an OCI image layout tarball of images (for ctr
// images import); images with the same layer file share its blob. Layers
// are streamed from their files, never held in memory whole.
func writeOCIArchive(path string, images []ociImage) error {
	type desc struct {
		MediaType   string            `json:"mediaType"`
		Digest      string            `json:"digest"`
		Size        int64             `json:"size"`
		Platform    map[string]string `json:"platform,omitempty"`
		Annotations map[string]string `json:"annotations,omitempty"`
	}
	blobs := map[string][]byte{} // digest -> small blob (configs, manifests)
	put := func(b []byte) string {
		sum := sha256.Sum256(b)
		d := "sha256:" + hex.EncodeToString(sum[:])
		blobs[d] = b
		return d
	}
	layers := map[string]desc{} // layer file -> its descriptor
	var layerOrder []string
	var manifests []desc
	for _, img := range images {
		l, ok := layers[img.layer]
		if !ok {
			f, err := os.Open(img.layer)
			if err != nil {
				return err
			}
			h := sha256.New()
			n, err := io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			l = desc{MediaType: "application/vnd.oci.image.layer.v1.tar", Digest: "sha256:" + hex.EncodeToString(h.Sum(nil)), Size: n}
			layers[img.layer] = l
			layerOrder = append(layerOrder, img.layer)
		}
		img.config["Env"] = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
		cfg, _ := json.Marshal(map[string]any{
			"created":      time.Unix(0, 0).UTC(),
			"architecture": "amd64",
			"os":           "linux",
			"config":       img.config,
			"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{l.Digest}},
		})
		cfgDigest := put(cfg)
		man, _ := json.Marshal(map[string]any{
			"schemaVersion": 2,
			"mediaType":     "application/vnd.oci.image.manifest.v1+json",
			"config":        desc{MediaType: "application/vnd.oci.image.config.v1+json", Digest: cfgDigest, Size: int64(len(cfg))},
			"layers":        []desc{l},
		})
		manifests = append(manifests, desc{
			MediaType: "application/vnd.oci.image.manifest.v1+json",
			Digest:    put(man), Size: int64(len(man)),
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
	for _, p := range layerOrder {
		l := layers[p]
		if err := tw.WriteHeader(&tar.Header{Name: "blobs/sha256/" + l.Digest[len("sha256:"):], Mode: 0o644, Size: l.Size, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		lf, err := os.Open(p)
		if err != nil {
			return err
		}
		_, err = io.Copy(tw, lf)
		lf.Close()
		if err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}
