// Command lorakit-router discovers the lorakit models under a directory and serves them over HTTP:
//
//	lorakit-router --models ./models --addr 127.0.0.1:8080 [--verify-golden] [--poll 30s]
//
// go/router/README.md describes discovery, the API and reloads; --help lists every flag.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/lorakit/lorakit/go/discovery"
	"github.com/lorakit/lorakit/go/lorakit"
	"github.com/lorakit/lorakit/go/router"
	"github.com/lorakit/lorakit/go/router/native"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stderr, nil))
}

// run serves until ctx ends and returns the exit status: 0 after a clean shutdown, 1 when the router could
// not start or stop cleanly, 2 for usage errors. ready, when set, receives the bound address once the
// initial load is in.
func run(ctx context.Context, args []string, stderr io.Writer, ready func(addr string)) int {
	// Discovery serves what the native core serves: the list comes from the core, never from this command.
	archs, err := native.Architectures()
	if err != nil {
		fmt.Fprintf(stderr, "lorakit-router: reading the native core's architectures: %v\n", err)
		return 1
	}
	served := discovery.DefaultPriority(archs) // every model_type the core accepts, in its order
	cfg, err := parseFlags(args, stderr, served)
	if err != nil {
		return 2
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.logLevel}))
	logger.Info("starting", "version", lorakit.Version(), "models", cfg.models, "device", cfg.device,
		"threads", cfg.threads, "verify_golden", cfg.verifyGolden, "priority", cfg.priority,
		"architectures", served, "batch_wait", cfg.batching.Wait.String(), "batch_max_texts", cfg.batching.MaxTexts,
		"batch_max_tokens", cfg.batching.MaxTokens)

	// Bound before anything loads: a taken port fails in milliseconds, not after minutes of loading, and
	// /health answers "loading" (503) while the models load.
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		logger.Error("listen failed; no model was loaded", "addr", cfg.addr, "error", err.Error())
		return 1
	}
	loader := &native.Loader{
		Options:      lorakit.Options{Device: cfg.device, Threads: cfg.threads, MaxBatch: cfg.limits.MaxBatch},
		VerifyGolden: cfg.verifyGolden,
		Logger:       logger,
	}
	srv, err := router.New(router.Config{
		ModelsRoot: cfg.models, Loader: loader, Limits: cfg.limits, Priority: cfg.priority, Logger: logger,
		Discovery: discovery.Options{Aliases: cfg.aliases, Architectures: archs, ResolveBase: lorakit.ResolveBase,
			FollowSymlinks: cfg.followSymlinks, ReadTimeout: cfg.readTimeout},
		Compat:      cfg.compat,
		LoadTimeout: cfg.loadTimeout,
		Batching:    cfg.batching,
	})
	if err != nil {
		ln.Close()
		logger.Error("invalid configuration", "error", err.Error())
		return 2
	}
	httpSrv := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	// Registered before "listening" so a SIGHUP sent as soon as the router is up reloads, never kills it.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	serveErr := make(chan error, 1)
	go func() { serveErr <- httpSrv.Serve(ln) }()
	logger.Info("listening", "addr", ln.Addr().String())

	if err := srv.Reload(ctx); err != nil {
		logger.Error("initial load failed", "error", err.Error())
		httpSrv.Close()
		return 1
	}
	if g := srv.Generation(); g > 0 {
		logger.Info("initial load complete", "generation", g)
	}
	if ready != nil {
		ready(ln.Addr().String())
	}

	bg, stopBackground := context.WithCancel(ctx)
	defer stopBackground()
	go reloadOnHangup(bg, hup, srv, logger)
	if cfg.poll > 0 {
		go srv.Poll(bg, cfg.poll)
	}

	status := 0
	select {
	case <-ctx.Done():
		logger.Info("shutting down", "timeout", cfg.shutdownTimeout.String())
	case err := <-serveErr:
		logger.Error("server stopped", "error", err.Error())
		status = 1
	}
	stopBackground()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.shutdownTimeout)
	defer cancel()
	if err := httpSrv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Error("shutdown did not finish in-flight requests", "error", err.Error())
		status = 1
	}
	select {
	case <-srv.Close():
	case <-shutdownCtx.Done():
		logger.Error("models still in use at shutdown timeout")
		status = 1
	}
	logger.Info("stopped", "status", status)
	return status
}

// reloadOnHangup reloads the models root on every SIGHUP until ctx ends.
func reloadOnHangup(ctx context.Context, hup <-chan os.Signal, srv *router.Server, logger *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			logger.Info("SIGHUP: reloading models")
			if err := srv.Reload(ctx); err != nil {
				logger.Error("SIGHUP reload failed", "error", fmt.Sprint(err))
			}
		}
	}
}
