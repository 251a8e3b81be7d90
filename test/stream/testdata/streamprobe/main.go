// streamprobe drives a streaming URL with client-go's real SPDY clients (test helper, not committed).
//   streamprobe exec URL        stdin/stdout/stderr from/to this process; exits with the remote exit code
//   streamprobe pf URL PORT     forwards PORT, sends a line through it and prints what comes back
package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"

	restclient "k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	utilexec "k8s.io/client-go/util/exec"
)

func main() {
	mode, raw := os.Args[1], os.Args[2]
	u, err := url.Parse(raw)
	if err != nil {
		panic(err)
	}
	cfg := &restclient.Config{}
	switch mode {
	case "exec":
		ex, err := remotecommand.NewSPDYExecutor(cfg, "POST", u)
		if err != nil {
			panic(err)
		}
		err = ex.Stream(remotecommand.StreamOptions{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
		var ce utilexec.CodeExitError
		if errors.As(err, &ce) {
			fmt.Fprintf(os.Stderr, "remote exit code %d\n", ce.Code)
			os.Exit(ce.Code)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "stream error: %v\n", err)
			os.Exit(100)
		}
	case "pf":
		transport, upgrader, err := spdy.RoundTripperFor(cfg)
		if err != nil {
			panic(err)
		}
		dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, "POST", u)
		stop, ready := make(chan struct{}), make(chan struct{})
		pf, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:" + os.Args[3]}, stop, ready, os.Stderr, os.Stderr)
		if err != nil {
			panic(err)
		}
		go func() {
			if err := pf.ForwardPorts(); err != nil {
				fmt.Fprintf(os.Stderr, "forward error: %v\n", err)
				os.Exit(101)
			}
		}()
		<-ready
		ports, _ := pf.GetPorts()
		for i := 0; i < 2; i++ {
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", ports[0].Local))
			if err != nil {
				panic(err)
			}
			fmt.Fprintf(c, "through the tunnel %d\n", i)
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				panic(err)
			}
			fmt.Print(strings.ToUpper(line[:1]) + line[1:])
			c.Close()
		}
		close(stop)
	}
}
