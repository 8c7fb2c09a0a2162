/*
 * main — command line, start-up order and shutdown of the snapfs daemon.
 *
 * Start-up order matters:
 *   1. parse options (ours, then libfuse's through fuse_session_new);
 *      open and lock the STORE (refusals are reported before anything
 *      is mounted, and a bad option creates no STORE);
 *   2. create the FUSE session and mount, then daemonize: fork() must
 *      come before any thread exists, and the store lock (an flock on an
 *      open file description) is inherited by the child;
 *   3. start the uploader (if s3_bucket is given; main_s3.h) and the
 *      compactor thread, recover every collection, then tell systemd
 *      that the mount is ready (sdnotify.h; in the foreground, which is
 *      how the unit runs it) and serve requests.
 * The S3 options are checked, and the credentials found (in the
 * environment or the AWS files, never in options), in step 1; see
 * main_s3.h.
 * Shutdown (fusermount3 -u, SIGTERM, SIGINT): the loop ends, systemd is
 * told that the daemon is stopping, the compactor finishes the delta in
 * progress and seals what it applied, the uploader abandons (and aborts)
 * the upload in progress, then the session is unmounted and the store
 * unlocked; exit status 0.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compactor.h"
#include "fsops.h"
#include "log.h"
#include "main_s3.h"
#include "parse.h"
#include "passthrough.h"
#include "sdnotify.h"
#include "store.h"
#include "trailhash.h"
#include "vfs.h"

struct snapfs_opts {
	char *store;
	char *batch_delay_ms; /* numbers are taken as text: fuse_opt's %u accepts "-3" */
	char *batch_max;
	char *keep;
	char *max_delta_size;
	char *loglevel;
	char *max_attempts;
	char *rejected_max;
	char *stale_dotfiles;
	int group_access; /* -o group_access: the STORE's group may read it */
	char *read_path;  /* -o read_path=auto|cache|passthrough */
	int passthrough;  /* -o passthrough: the same as read_path=passthrough (older name) */
	/* S3 (see snapfs(8)); no option takes a credential. Parsed with or without S3 built in. */
	struct main_s3_opts s3;
};

enum { KEY_DISCARD, KEY_HELP, KEY_VERSION };

#define SNAPFS_OPT(t, p)                                                                           \
	{                                                                                          \
		t, offsetof(struct snapfs_opts, p), 1                                              \
	}

static const struct fuse_opt snapfs_opt_spec[] = {
	SNAPFS_OPT("batch_delay=%s", batch_delay_ms),
	SNAPFS_OPT("batch_max=%s", batch_max),
	SNAPFS_OPT("keep=%s", keep),
	SNAPFS_OPT("max_delta_size=%s", max_delta_size),
	SNAPFS_OPT("loglevel=%s", loglevel),
	SNAPFS_OPT("max_attempts=%s", max_attempts),
	SNAPFS_OPT("rejected_max=%s", rejected_max),
	SNAPFS_OPT("stale_dotfiles=%s", stale_dotfiles),
	SNAPFS_OPT("group_access", group_access),
	SNAPFS_OPT("read_path=%s", read_path),
	SNAPFS_OPT("passthrough", passthrough),
	SNAPFS_OPT("s3_bucket=%s", s3.bucket),
	SNAPFS_OPT("s3_prefix=%s", s3.prefix),
	SNAPFS_OPT("s3_endpoint=%s", s3.endpoint),
	SNAPFS_OPT("s3_region=%s", s3.region),
	SNAPFS_OPT("s3_profile=%s", s3.profile),
	SNAPFS_OPT("s3_part_size=%s", s3.part_size),
	SNAPFS_OPT("s3_parallel=%s", s3.parallel),
	SNAPFS_OPT("s3_upload=%s", s3.upload),
	SNAPFS_OPT("s3_lease_ttl=%s", s3.lease_ttl),
	SNAPFS_OPT("s3_host_id=%s", s3.host_id),
	SNAPFS_OPT("s3_keep=%s", s3.keep),
	SNAPFS_OPT("s3_grace=%s", s3.grace),
	SNAPFS_OPT("s3_cluster=%s", s3.cluster),
	SNAPFS_OPT("s3_role=%s", s3.role),
	SNAPFS_OPT("s3_poll=%s", s3.poll),
	/* fstab-only options that mount.fuse3 passes through: accepted and dropped. */
	FUSE_OPT_KEY("auto", KEY_DISCARD),
	FUSE_OPT_KEY("noauto", KEY_DISCARD),
	FUSE_OPT_KEY("user", KEY_DISCARD),
	FUSE_OPT_KEY("nouser", KEY_DISCARD),
	FUSE_OPT_KEY("users", KEY_DISCARD),
	FUSE_OPT_KEY("_netdev", KEY_DISCARD),
	FUSE_OPT_KEY("defaults", KEY_DISCARD),
	FUSE_OPT_END,
};

static int snapfs_opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct snapfs_opts *o = data;
	if (key == KEY_DISCARD)
		return 0;
	if (key == FUSE_OPT_KEY_NONOPT && !o->store) {
		o->store = strdup(arg);
		return o->store ? 0 : -1;
	}
	return 1; /* the mountpoint and libfuse's options go on to libfuse */
}

static void usage(const char *prog)
{
	printf("usage: %s STORE MOUNTPOINT [options]\n\n"
	       "Mounts the snapfs store STORE (a local directory, created if missing) at\n"
	       "MOUNTPOINT. See snapfs(8).\n\n"
	       "snapfs options:\n"
	       "    -o batch_delay=MS      gather deltas this long before merging (default 500)\n"
	       "    -o batch_max=N         deltas per snapshot at most (default 1000)\n"
	       "    -o keep=N              newest snapshots kept per collection (default 10)\n"
	       "    -o max_delta_size=SIZE largest delta accepted, K/M/G suffixes (default 1G)\n"
	       "    -o loglevel=LEVEL      err, warning, info or debug (default info)\n"
	       "    -o max_attempts=N      a delta that fails N times in a row for reasons of\n"
	       "                           its own is rejected (default 3)\n"
	       "    -o rejected_max=N      deltas kept in each rejected/, oldest removed first;\n"
	       "                           0: no cap (default 1000)\n"
	       "    -o stale_dotfiles=AGE  dot-files in incoming/ untouched this long and not\n"
	       "                           open are removed; 0: never (default 1d)\n"
	       "    -o group_access        the STORE's group may read it (dirs 0750, files\n"
	       "                           0640, snapshots 0440; default: owner only)\n"
	       "    -o read_path=WAY       how sealed files are read: auto (passthrough, but\n"
	       "                           SQLite's opens from the page cache), cache or\n"
	       "                           passthrough (default auto)\n"
	       "    -o passthrough         the same as read_path=passthrough\n"
	       "    -o auto,noauto,user,nouser,users,_netdev,defaults\n"
	       "                           accepted and ignored (for /etc/fstab)\n"
	       "%s\n",
	       prog, main_s3_help());
}

/* A decimal number in [min, max] into *out; the option's default stays if s is NULL. */
static int opt_uint(const char *opt, const char *s, unsigned min, unsigned max, unsigned *out)
{
	if (!s || parse_uint(s, min, max, out) == 0)
		return 0;
	fprintf(stderr, "snapfs: %s=%s: expected a whole number from %u to %u\n", opt, s, min, max);
	return -1;
}

static int parse_level(const char *s)
{
	static const struct {
		const char *name;
		int level;
	} levels[] = {{"err", LOG_ERR},
		      {"error", LOG_ERR},
		      {"warning", LOG_WARNING},
		      {"info", LOG_INFO},
		      {"debug", LOG_DEBUG}};
	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
		if (!strcasecmp(s, levels[i].name))
			return levels[i].level;
	return -1;
}

/* The compactor's published() event goes to the vfs and the uploader. */
struct published_fanout {
	vfs *v;
	main_s3 *s3;
};

static void on_published(void *ctx, const char *coll, uint64_t id)
{
	struct published_fanout *f = ctx;
	vfs_published(f->v, coll, id);
	main_s3_published(f->s3, coll, id);
}

/* The compactor's housekeeping event: the vfs cleans stale dot-files of incoming/. */
static void on_housekeeping(void *ctx, const char *coll)
{
	struct published_fanout *f = ctx;
	vfs_housekeeping(f->v, coll);
}

/* The settings of the local part, checked (the S3 ones are main_s3's). */
struct main_cfg {
	unsigned batch_delay_ms, batch_max, keep, max_attempts, rejected_max;
	uint64_t stale_ms, max_delta;
	int level;
	enum vfs_read_path read_path;
};

/* Checks the local options into c, with defaults; -1 (said on stderr) on a bad one. */
static int main_settings(const struct snapfs_opts *o, struct main_cfg *c)
{
	*c = (struct main_cfg){.batch_delay_ms = 500,
			       .batch_max = 1000,
			       .keep = 10,
			       .max_attempts = 3,
			       .rejected_max = 1000,
			       .stale_ms = 86400000,
			       .max_delta = 1ULL << 30,
			       .level = LOG_INFO};
	if (opt_uint("keep", o->keep, 1, 1000000, &c->keep) < 0 ||
	    opt_uint("batch_max", o->batch_max, 1, 1000000, &c->batch_max) < 0 ||
	    opt_uint("batch_delay", o->batch_delay_ms, 0, 3600000, &c->batch_delay_ms) < 0 ||
	    opt_uint("max_attempts", o->max_attempts, 1, 1000, &c->max_attempts) < 0 ||
	    opt_uint("rejected_max", o->rejected_max, 0, 100000000, &c->rejected_max) < 0)
		return -1;
	if (o->stale_dotfiles && parse_duration_ms(o->stale_dotfiles, &c->stale_ms) < 0) {
		fprintf(stderr,
			"snapfs: stale_dotfiles=%s: not a duration (a number with an optional unit "
			"ms, s, m, h or d; 0 turns the clean-up off)\n",
			o->stale_dotfiles);
		return -1;
	}
	if (o->max_delta_size &&
	    (parse_size(o->max_delta_size, &c->max_delta) < 0 || c->max_delta == 0)) {
		fprintf(stderr,
			"snapfs: max_delta_size=%s: not a size (a positive number with an optional "
			"K, M or G suffix)\n",
			o->max_delta_size);
		return -1;
	}
	if (o->passthrough)
		c->read_path = VFS_READ_PASSTHROUGH;
	if (o->read_path) {
		int p = vfs_read_path_parse(o->read_path);
		if (p < 0 || (o->passthrough && p != VFS_READ_PASSTHROUGH)) {
			fprintf(stderr, "snapfs: read_path=%s: %s\n", o->read_path,
				p < 0 ? "use auto, cache or passthrough"
				      : "contradicts -o passthrough");
			return -1;
		}
		c->read_path = (enum vfs_read_path)p;
	}
	if (o->loglevel && (c->level = parse_level(o->loglevel)) < 0) {
		fprintf(stderr, "snapfs: loglevel=%s: use err, warning, info or debug\n",
			o->loglevel);
		return -1;
	}
	return 0;
}

static void main_opts_free(struct snapfs_opts *o)
{
	char **all[] = {&o->store,          &o->max_delta_size, &o->keep,         &o->batch_max,
			&o->batch_delay_ms, &o->loglevel,       &o->max_attempts, &o->rejected_max,
			&o->stale_dotfiles, &o->s3.bucket,      &o->s3.prefix,    &o->s3.endpoint,
			&o->s3.region,      &o->s3.profile,     &o->s3.part_size, &o->s3.parallel,
			&o->s3.upload,      &o->s3.lease_ttl,   &o->s3.host_id,   &o->s3.keep,
			&o->s3.grace,       &o->s3.cluster,     &o->s3.role,      &o->s3.poll,
			&o->read_path};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		free(*all[i]);
		*all[i] = NULL;
	}
}

/* Starts the compactor, then the vfs on it. 0 or a negative errno. */
static int main_start_core(store *st, vfs *v, const struct main_cfg *c,
			   struct published_fanout *fan, compactor **comp)
{
	struct compactor_config ccfg = {
		.batch_delay_ms = c->batch_delay_ms,
		.batch_max = c->batch_max,
		.max_attempts = c->max_attempts,
		.rejected_max = c->rejected_max,
		/* Look at least twice per stale_dotfiles, at most every 10 min. */
		.housekeep_ms = c->stale_ms && c->stale_ms / 2 < 600000
					? (unsigned)(c->stale_ms / 2 > 1000 ? c->stale_ms / 2 : 1000)
					: 600000};
	struct compactor_events ev = {.ctx = fan,
				      .published = on_published,
				      .housekeeping = on_housekeeping};
	int rc = compactor_start(st, &ccfg, &ev, comp);
	if (rc == 0)
		rc = vfs_start(v, st, *comp);
	return rc;
}

/*
 * Mounted, every collection recovered, the loop about to serve: a
 * Type=notify unit is started. Only in the foreground: a daemonized
 * snapfs is not the process systemd started. True if systemd was told.
 */
static bool main_tell_ready(store *st, const char *mountpoint)
{
	char state[PATH_MAX + 64], err[256];
	snprintf(state, sizeof(state), "READY=1\nSTATUS=serving store %s at %s", store_root(st),
		 mountpoint);
	int rc = sdnotify_send(state, err, sizeof(err));
	if (rc < 0)
		log_warn("cannot tell systemd that the mount is ready: %s", err);
	return rc > 0;
}

/*
 * Only the main thread may take SIGINT, SIGTERM and SIGHUP. libfuse's
 * handler ends the session by setting a flag that the main thread's loop
 * sees when the signal interrupts its wait; delivered to any other thread
 * (the compactor's, a hash or an S3 thread), it sets the flag and wakes
 * nobody, and the mount stays up until some request arrives. main blocks
 * them before it starts any thread (threads inherit the mask) and
 * unblocks them in its own thread when the loop starts; a signal that
 * came meanwhile is delivered then.
 */
static void main_signals(int how)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(how, &set, NULL);
}

/* Serves requests until unmount or a signal; the loop's result. */
static int main_serve(struct fuse_session *se, const struct fuse_cmdline_opts *cmd)
{
	main_signals(SIG_UNBLOCK);
	if (cmd->singlethread)
		return fuse_session_loop(se);
	struct fuse_loop_config *lc = fuse_loop_cfg_create();
	fuse_loop_cfg_set_clone_fd(lc, cmd->clone_fd);
	/* fuse_parse_cmdline says UINT_MAX for "not given"; libfuse 3.14 warns if passed on. */
	if (cmd->max_threads > 0 && cmd->max_threads <= 100000)
		fuse_loop_cfg_set_max_threads(lc, cmd->max_threads);
	if (cmd->max_idle_threads <= 100000)
		fuse_loop_cfg_set_idle_threads(lc, cmd->max_idle_threads);
	int rc = fuse_session_loop_mt(se, lc);
	fuse_loop_cfg_destroy(lc);
	return rc;
}

/*
 * After the fork (the uploader, the compactor and the cluster run
 * threads): S3 upload, then the compactor and the vfs, then the
 * cluster's threads. -1 on failure (logged).
 */
static int main_start(store *st, vfs *v, struct fuse_session *se, const struct main_cfg *mc,
		      struct published_fanout *fan, compactor **comp)
{
	char err[512];
	if (fan->s3 && main_s3_start(fan->s3, st, v, err, sizeof(err)) < 0) {
		log_err("cannot start the uploader: %s", err);
		return -1;
	}
	int rc = main_start_core(st, v, mc, fan, comp);
	if (rc < 0) {
		log_err("cannot start on store %s: %s", store_root(st), strerror(-rc));
		return -1;
	}
	fsops_attach_notifier(v, se);
	if (main_s3_run(fan->s3, st, *comp, v, err, sizeof(err)) < 0) {
		log_err("cannot join the cluster: %s", err);
		return -1;
	}
	return 0;
}

/* -h and -V: true if one was given (and answered on stdout). */
static bool main_info(const struct fuse_cmdline_opts *cmd, const char *prog)
{
	if (cmd->show_help) {
		usage(prog);
		printf("FUSE options:\n");
		fuse_cmdline_help();
		fuse_lowlevel_help();
		return true;
	}
	if (cmd->show_version) {
		printf("snapfs version %s\nFUSE library version %s\n", SNAPFS_VERSION,
		       fuse_pkgversion());
		fuse_lowlevel_version();
		return true;
	}
	return false;
}

/*
 * Mounts se at mountpoint (with passthrough if asked) and daemonizes
 * unless in the foreground. *mounted says whether there is a mount to
 * undo. -1 on failure (said on stderr).
 */
static int main_mount(struct fuse_session *se, const struct fuse_cmdline_opts *cmd,
		      enum vfs_read_path read_path, int *mounted)
{
	if (fuse_session_mount(se, cmd->mountpoint) != 0) {
		fprintf(stderr, "snapfs: cannot mount at %s\n", cmd->mountpoint);
		return -1;
	}
	*mounted = 1;
	/* Which open goes which way is the vfs's choice (enum vfs_read_path). */
	if (read_path != VFS_READ_CACHE)
		pt_attach(se);
	return fuse_daemonize(cmd->foreground) != 0 ? -1 : 0;
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct snapfs_opts o = {0};
	struct main_cfg mc;
	struct fuse_cmdline_opts cmd = {0};
	struct fuse_session *se = NULL;
	store *st = NULL;
	vfs *v = NULL;
	compactor *comp = NULL;
	main_s3 *s3 = NULL;
	int ret = 1, mounted = 0, handlers = 0;
	bool ready = false;
	char err[512];

	main_signals(SIG_BLOCK);
	if (fuse_opt_parse(&args, &o, snapfs_opt_spec, snapfs_opt_proc) < 0 ||
	    fuse_parse_cmdline(&args, &cmd) != 0) {
		fprintf(stderr, "snapfs: invalid command line (see snapfs -h)\n");
		goto out;
	}
	if (main_info(&cmd, argv[0])) {
		ret = 0;
		goto out;
	}
	if (!o.store || !cmd.mountpoint) {
		fprintf(stderr, "snapfs: %s\nusage: %s STORE MOUNTPOINT [options] (see snapfs -h)\n",
			!o.store ? "no STORE given" : "no MOUNTPOINT given", argv[0]);
		goto out;
	}
	if (main_settings(&o, &mc) < 0)
		goto out;
	log_init(false, mc.level);
	if (main_s3_prepare(&o.s3, &s3, err, sizeof(err)) < 0) {
		fprintf(stderr, "snapfs: %s\n", err);
		goto out;
	}

	struct vfs_config vcfg = {.max_delta_size = mc.max_delta,
				  .read_path = mc.read_path,
				  .keep = mc.keep,
				  .stale_dotfiles_ms = mc.stale_ms};
	if (vfs_create(&vcfg, &v) < 0) {
		fprintf(stderr, "snapfs: out of memory\n");
		goto out;
	}
	/*
	 * default_permissions: the kernel checks mode bits (0444 snapshots) for
	 * non-root callers. noatime: access times mean nothing here (though
	 * Linux marks them stale after each passthrough read whatever this
	 * says: see enum vfs_read_path).
	 */
	if (fuse_opt_add_arg(&args, "-odefault_permissions,noatime,fsname=snapfs,subtype=snapfs") < 0)
		goto out;
	se = fuse_session_new(&args, fsops_ops(), sizeof(struct fuse_lowlevel_ops), v);
	if (!se) {
		fprintf(stderr, "snapfs: not mounted: libfuse refused the options (see above)\n");
		goto out;
	}
	/*
	 * The session checked libfuse's options: only now may a missing STORE
	 * be created. What the daemon creates (live databases, queued files,
	 * records) is its owner's alone, or its group's too with group_access;
	 * the store sets the modes of its directories and sealed files itself.
	 */
	umask(o.group_access ? 027 : 077);
	if (store_open(o.store, o.group_access ? STORE_OPEN_GROUP : 0, &log_sink, &st, err,
		       sizeof(err)) < 0 ||
	    main_s3_claim(s3, st, err, sizeof(err)) < 0) {
		fprintf(stderr, "snapfs: %s\n", err);
		goto out;
	}
	if (fuse_set_signal_handlers(se) != 0)
		goto out;
	handlers = 1;
	if (main_mount(se, &cmd, mc.read_path, &mounted) < 0)
		goto out;
	if (!cmd.foreground) {
		log_init(true, mc.level);
		store_note_pid(st); /* the lock now belongs to the daemon, not its parent */
	}

	struct published_fanout fan = {.v = v, .s3 = s3};
	if (main_start(st, v, se, &mc, &fan, &comp) < 0)
		goto out;
	log_info("mounted store %s at %s (keep=%u, batch_delay=%ums, batch_max=%u, "
		 "max_delta_size=%llu)",
		 store_root(st), cmd.mountpoint, mc.keep, mc.batch_delay_ms, mc.batch_max,
		 (unsigned long long)mc.max_delta);
	if (cmd.foreground)
		ready = main_tell_ready(st, cmd.mountpoint);

	int rc = main_serve(se, &cmd);
	/* libfuse's signal handlers end the loop with the signal's number: a clean stop too. */
	ret = (rc == 0 || rc == SIGTERM || rc == SIGINT || rc == SIGHUP) ? 0 : 1;
	log_info("unmounting %s", cmd.mountpoint);
	if (ready && sdnotify_send("STOPPING=1", err, sizeof(err)) < 0)
		log_warn("cannot tell systemd that snapfs is stopping: %s", err);

out:
	main_s3_halt(s3);     /* the cluster's threads call into the compactor and the vfs */
	compactor_stop(comp); /* before the session goes: it may still notify the kernel */
	main_s3_stop(s3);     /* after the compactor: it tells the uploader of snapshots */
	if (handlers)
		fuse_remove_signal_handlers(se);
	if (mounted)
		fuse_session_unmount(se);
	if (se)
		fuse_session_destroy(se);
	pt_detach();
	vfs_destroy(v); /* drops the last references to the hashes of deltas being written */
	if (!trailhash_drain(5000))
		log_warn("a thread hashing a delta being written did not stop within 5 s");
	store_close(st);
	free(cmd.mountpoint);
	main_opts_free(&o);
	fuse_opt_free_args(&args);
	if (ret == 0 && comp)
		log_info("stopped cleanly");
	return ret;
}
