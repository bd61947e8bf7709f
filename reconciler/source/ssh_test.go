package source

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

// sshGitServer serves git-upload-pack over a real ssh server on a random port, accepting
// only the given client key.
func sshGitServer(t *testing.T, root string, client ssh.PublicKey) (addr string, hostKey ssh.PublicKey) {
	t.Helper()
	uploadPack, err := exec.LookPath("git-upload-pack")
	if err != nil {
		t.Skip("no git-upload-pack binary")
	}
	_, hostPriv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if string(k.Marshal()) != string(client.Marshal()) {
			return nil, os.ErrPermission
		}
		return nil, nil
	}}
	cfg.AddHostKey(signer)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				serveSSH(c, cfg, uploadPack, root)
			}()
		}
	}()
	return ln.Addr().String(), signer.PublicKey()
}

func serveSSH(c net.Conn, cfg *ssh.ServerConfig, uploadPack, root string) {
	defer c.Close()
	_, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "sessions only")
			continue
		}
		ch, reqs, err := nc.Accept()
		if err != nil {
			return
		}
		for req := range reqs {
			if req.Type != "exec" {
				req.Reply(false, nil)
				continue
			}
			// Payload: uint32 length + "git-upload-pack '/path'".
			cmdline := string(req.Payload[4:])
			repo := strings.Trim(strings.TrimPrefix(cmdline, "git-upload-pack "), "'")
			req.Reply(true, nil)
			cmd := exec.Command(uploadPack, filepath.Join(root, filepath.Clean("/"+repo)))
			cmd.Stdin, cmd.Stdout, cmd.Stderr = ch, ch, ch.Stderr()
			status := uint32(0)
			if err := cmd.Run(); err != nil {
				status = 1
			}
			var b [4]byte
			binary.BigEndian.PutUint32(b[:], status)
			ch.SendRequest("exit-status", false, b[:])
			ch.Close()
			break
		}
	}
}

func TestSSHKeyAgainstRealServer(t *testing.T) {
	work := newWorkRepo(t)
	bare := work.newBareRemote()
	head := work.commit("served over ssh", map[string]string{"bosun.yml": "{}\n"})
	work.push(false)

	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	addr, hostKey := sshGitServer(t, filepath.Dir(bare), must(ssh.NewPublicKey(pub)))
	hosts := filepath.Join(t.TempDir(), "known_hosts")
	host, port, _ := net.SplitHostPort(addr)
	line := "[" + host + "]:" + port + " " + string(ssh.MarshalAuthorizedKey(hostKey))
	if err := os.WriteFile(hosts, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	url := "ssh://git@" + addr + "/" + filepath.Base(bare)

	s, err := Open(Config{Remote: Remote{URL: url, SSHKey: pem.EncodeToMemory(block), KnownHostsFile: hosts}, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rev, _, err := s.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rev.SHA != head {
		t.Fatalf("Check = %s, want %s", rev.SHA, head)
	}

	// A key the server does not know is refused, with a hint.
	_, other, _ := ed25519.GenerateKey(nil)
	otherBlock, _ := ssh.MarshalPrivateKey(other, "")
	s2, err := Open(Config{Remote: Remote{URL: url, SSHKey: pem.EncodeToMemory(otherBlock), KnownHostsFile: hosts}, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, _, err := s2.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "the ssh key was refused") {
		t.Fatalf("unknown key: %v", err)
	}
}
