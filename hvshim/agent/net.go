package agent

import (
	"encoding/json"
	"net"

	"golang.org/x/sys/unix"

	"github.com/runh-project/runh/hvshim/proto"
	"github.com/runh-project/runh/hvshim/vmnet"
)

func init() {
	handlers[proto.OpNetwork] = network
}

// network recreates the container's host network in the guest (vmnet);
// the reply names the namespace the container joins.
func network(s *server, body json.RawMessage) (any, error) {
	var cfg vmnet.Config
	if err := json.Unmarshal(body, &cfg); err != nil {
		return nil, err
	}
	open := func() (net.Conn, error) { return s.sess.Open() }
	path, err := vmnet.Setup(&cfg, open)
	if err != nil {
		return nil, err
	}
	recordNetwork(&cfg, open)
	return proto.NetworkReply{Path: path}, nil
}

// loopbackUp brings up the guest's own lo (containers get theirs from
// libcontainer, or from vmnet.Setup).
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}
