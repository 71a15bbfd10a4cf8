/* The block-job framework with a job of the test's own: the states and
 * events of QEMU's job model for success, failure and cancel; pause and
 * resume, and the verbs refused where QEMU refuses them; the rate limit
 * within 10% over a 2-second window; on-error stop, ignore and report;
 * ids, busy drives and the migration blocker. */
#include <errno.h>
#include <glib.h>
#include <string.h>

#include "jobs/job.h"

#define UNIT (64 * 1024)
#define EVENT_TIMEOUT_US (10 * G_USEC_PER_SEC)

/* ---- Events, as lines ("status running", "completed <error>") ---- */

static GAsyncQueue *events;

static void push(char *line)
{
    g_async_queue_push(events, line);
}

static void on_status(const char *id, JobStatus status, void *opaque)
{
    push(g_strdup_printf("status %s", job_status_name(status)));
}

static void on_completed(const JobInfo *info, const char *error, void *opaque)
{
    push(g_strdup_printf("completed %s", error ? error : "ok"));
}

static void on_cancelled(const JobInfo *info, void *opaque)
{
    push(g_strdup("cancelled"));
}

static void on_error(const JobInfo *info, const char *op, JobErrorAction action, void *opaque)
{
    push(g_strdup_printf("error %s %s", op, job_action_name(action)));
}

/* The next event must be WANT. */
static void expect(const char *want)
{
    char *got = g_async_queue_timeout_pop(events, EVENT_TIMEOUT_US);
    if (g_strcmp0(got, want) != 0) {
        g_error("expected event '%s', got '%s'", want, got ? got : "(none)");
    }
    g_free(got);
}

static void expect_sequence(const char *const *want)
{
    for (; *want; want++) {
        expect(*want);
    }
}

/* ---- A job of the test's own ---- */

typedef struct TestJob {
    int units;               /* of UNIT bytes to do */
    int fail_at;             /* -1: never; else that unit fails (once) */
    int fail_err;
    bool failed_once;
    gint done;               /* atomic: units done */
    gint64 *stamps;          /* when each unit started */
    GMutex gate_lock;        /* run waits at unit GATE_AT until opened */
    GCond gate_cond;
    int gate_at;
    bool gate_open;
} TestJob;

static void wait_gate(TestJob *t, int unit)
{
    g_mutex_lock(&t->gate_lock);
    while (unit == t->gate_at && !t->gate_open) {
        g_cond_wait(&t->gate_cond, &t->gate_lock);
    }
    g_mutex_unlock(&t->gate_lock);
}

static void open_gate(TestJob *t)
{
    g_mutex_lock(&t->gate_lock);
    t->gate_open = true;
    g_cond_broadcast(&t->gate_cond);
    g_mutex_unlock(&t->gate_lock);
}

/* One unit: 0, or the planned failure. */
static int do_unit(TestJob *t, int unit)
{
    if (unit == t->fail_at && !t->failed_once) {
        t->failed_once = true;
        return t->fail_err;
    }
    return 0;
}

static int test_run(Job *job, GError **errp)
{
    TestJob *t = job_opaque(job);
    int unit = 0;

    job_progress_set_total(job, (uint64_t)t->units * UNIT);
    while (unit < t->units) {
        job_rate_wait(job);
        job_pause_point(job);
        if (job_is_cancelled(job)) {
            return -ECANCELED;
        }
        wait_gate(t, unit);
        t->stamps[unit] = g_get_monotonic_time();
        int ret = do_unit(t, unit);
        if (ret < 0) {
            JobErrorAction a = job_error_action(job, "read", ret);
            if (a == JOB_ACTION_REPORT) {
                return ret;
            }
            unit += a == JOB_ACTION_IGNORE;
            continue;
        }
        job_rate_account(job, UNIT);
        g_atomic_int_inc(&t->done);
        job_progress_set_offset(job, (uint64_t)++unit * UNIT);
    }
    return 0;
}

static const JobDriver test_driver = { .type = "stream", .run = test_run };

static TestJob *test_job_new(int units)
{
    TestJob *t = g_new0(TestJob, 1);
    t->units = units;
    t->fail_at = -1;
    t->gate_at = -1;
    t->stamps = g_new0(gint64, units);
    g_mutex_init(&t->gate_lock);
    g_cond_init(&t->gate_cond);
    return t;
}

static void test_job_free(TestJob *t)
{
    g_mutex_clear(&t->gate_lock);
    g_cond_clear(&t->gate_cond);
    g_free(t->stamps);
    g_free(t);
}

/* Create and start job ID; returns a reference (job_release it). */
static Job *start(const char *id, TestJob *t, int64_t speed, JobOnError on_error)
{
    GError *err = NULL;
    g_assert_nonnull(job_create(id, &test_driver, "disk0", speed, on_error, t, &err));
    g_assert_no_error(err);
    Job *job = job_find(id);
    expect("status created");
    job_start(job);
    expect("status running");
    return job;
}

/* Wait until job ID has left the list (it concluded). */
static void wait_gone(const char *id)
{
    Job *job;
    while ((job = job_find(id))) {
        job_release(job);
        g_usleep(1000);
    }
}

static void drop_events(void)
{
    char *line;
    while ((line = g_async_queue_try_pop(events))) {
        g_free(line);
    }
}

/* ---- Tests ---- */

/* created, running, waiting, pending, completed, concluded, null; then
 * the job is gone. */
static void test_success(void)
{
    static const char *const seq[] = {
        "status waiting", "status pending", "completed ok", "status concluded",
        "status null", NULL,
    };
    TestJob *t = test_job_new(8);

    job_release(start("job0", t, 0, JOB_ON_ERROR_REPORT));
    expect_sequence(seq);
    g_assert_cmpint(t->done, ==, 8);
    g_assert_null(job_find("job0"));
    g_assert_true(job_check_migration(NULL));
    test_job_free(t);
}

/* A failure: aborting, completed with QEMU's error text. */
static void test_failure_reported(void)
{
    static const char *const seq[] = {
        "error read report", "status aborting", "completed Input/output error",
        "status concluded", "status null", NULL,
    };
    TestJob *t = test_job_new(8);
    t->fail_at = 3;
    t->fail_err = -EIO;

    job_release(start("job0", t, 0, JOB_ON_ERROR_REPORT));
    expect_sequence(seq);
    g_assert_cmpint(t->done, ==, 3);
    test_job_free(t);
}

/* on-error=ignore: the unit is skipped and the job goes on. */
static void test_failure_ignored(void)
{
    static const char *const seq[] = {
        "error read ignore", "status waiting", "status pending", "completed ok",
        "status concluded", "status null", NULL,
    };
    TestJob *t = test_job_new(8);
    t->fail_at = 2;
    t->fail_err = -EIO;

    job_release(start("job0", t, 0, JOB_ON_ERROR_IGNORE));
    expect_sequence(seq);
    g_assert_cmpint(t->done, ==, 7);
    test_job_free(t);
}

/* on-error=stop: the job pauses with io-status failed; resume retries the
 * unit; enospc stops only for ENOSPC, with io-status nospace. */
static void check_stop(JobOnError policy, int err, const char *io_status)
{
    TestJob *t = test_job_new(6);
    t->fail_at = 4;
    t->fail_err = err;
    Job *job = start("job0", t, 0, policy);

    expect("error read stop");
    expect("status paused");
    GArray *all = job_query_all();
    JobInfo *info = &g_array_index(all, JobInfo, 0);
    g_assert_cmpstr(job_io_status_name(info->io_status), ==, io_status);
    g_assert_true(info->paused);
    g_assert_cmpint(info->offset, ==, 4 * UNIT);
    job_info_clear(info);
    g_array_unref(all);
    g_assert_true(job_user_resume(job, NULL));
    expect("status running");
    expect("status waiting");
    g_assert_cmpint(t->done, ==, 6);
    job_release(job);
    wait_gone("job0");
    drop_events();
    test_job_free(t);
}

static void test_failure_stop(void)
{
    check_stop(JOB_ON_ERROR_STOP, -EIO, "failed");
    check_stop(JOB_ON_ERROR_ENOSPC, -ENOSPC, "nospace");
}

/* Pause, the verbs' errors, resume, cancel while paused. */
static void test_pause_resume_cancel(void)
{
    static const char *const seq[] = {
        "status running", "status aborting", "cancelled", "status concluded", "status null",
        NULL,
    };
    GError *err = NULL;
    TestJob *t = test_job_new(100);
    t->gate_at = 2;
    Job *job = start("job0", t, 0, JOB_ON_ERROR_REPORT);

    g_assert_false(job_user_resume(job, &err));
    g_assert_cmpstr(err->message, ==, "Can't resume a job that was not paused");
    g_clear_error(&err);
    g_assert_true(job_user_pause(job, NULL));
    g_assert_false(job_user_pause(job, &err));
    g_assert_cmpstr(err->message, ==, "Job is already paused");
    g_clear_error(&err);
    open_gate(t);
    expect("status paused");
    int done = g_atomic_int_get(&t->done);
    g_usleep(50 * 1000);
    g_assert_cmpint(g_atomic_int_get(&t->done), ==, done);       /* really paused */
    g_assert_true(job_user_cancel(job, NULL));
    expect_sequence(seq);
    g_assert_cmpint(t->done, <, 100);
    g_assert_false(job_user_pause(job, &err));
    g_assert_cmpstr(err->message, ==, "Job 'job0' in state 'null' cannot accept command verb "
                    "'pause'");
    g_clear_error(&err);
    job_release(job);
    test_job_free(t);
}

/* Units done in [from, from + window) of the job's run. */
static int units_between(TestJob *t, gint64 from, gint64 window)
{
    int n = 0;
    for (int i = 0; i < t->units; i++) {
        n += t->stamps[i] >= from && t->stamps[i] < from + window;
    }
    return n;
}

/* At 2 MiB/s in 64 KiB units, every 2-second window of the run sees
 * 4 MiB within 10%; a new speed takes effect at once. */
static void test_rate_limit(void)
{
    const int64_t speed = 2 << 20;
    TestJob *t = test_job_new(120);          /* 7.5 MiB: about 3.75 s */
    Job *job = start("job0", t, speed, JOB_ON_ERROR_REPORT);

    while (g_atomic_int_get(&t->done) < t->units) {
        g_usleep(10 * 1000);
    }
    for (gint64 from = t->stamps[0]; from + 2 * G_USEC_PER_SEC <= t->stamps[t->units - 1];
         from += G_USEC_PER_SEC / 4) {
        double bytes = (double)units_between(t, from, 2 * G_USEC_PER_SEC) * UNIT;
        g_assert_cmpfloat(bytes, >=, 0.9 * 2 * speed);
        g_assert_cmpfloat(bytes, <=, 1.1 * 2 * speed);
    }
    expect_sequence((const char *const[]){ "status waiting", "status pending", "completed ok",
                                           "status concluded", "status null", NULL });
    job_release(job);
    test_job_free(t);
}

/* Ids as QEMU checks them, one job per drive, speed >= 0; the migration
 * blocker names the job while it runs. */
static void test_ids_and_blocker(void)
{
    GError *err = NULL;
    TestJob *t = test_job_new(1000);
    t->gate_at = 0;

    g_assert_null(job_create("0bad", &test_driver, "disk0", 0, 0, t, &err));
    g_assert_cmpstr(err->message, ==, "Invalid job ID '0bad'");
    g_clear_error(&err);
    g_assert_null(job_create("job0", &test_driver, "disk0", -1, 0, t, &err));
    g_assert_cmpstr(err->message, ==, "Invalid parameter 'speed'");
    g_clear_error(&err);
    Job *job = start("job0", t, 0, JOB_ON_ERROR_REPORT);
    g_assert_null(job_create("job0", &test_driver, "disk1", 0, 0, t, &err));
    g_assert_cmpstr(err->message, ==, "Job ID 'job0' already in use");
    g_clear_error(&err);
    g_assert_null(job_create("job1", &test_driver, "disk0", 0, 0, t, &err));
    g_assert_cmpstr(err->message, ==, "Node 'disk0' is busy: block device is in use by "
                    "block job: stream");
    g_clear_error(&err);
    g_assert_false(job_check_migration(&err));
    g_assert_nonnull(strstr(err->message, "'job0'"));
    g_clear_error(&err);
    g_assert_false(job_set_speed(job, -5, &err));
    g_assert_cmpstr(err->message, ==, "Invalid parameter 'speed'");
    g_clear_error(&err);
    g_assert_true(job_user_cancel(job, NULL));
    open_gate(t);
    wait_gone("job0");
    g_assert_true(job_check_migration(NULL));
    job_release(job);
    drop_events();
    test_job_free(t);
}

/* Shutdown: every job cancelled, even one sleeping for its rate limit,
 * and waited for. */
static void test_cancel_all(void)
{
    TestJob *t = test_job_new(1000);
    gint64 t0 = g_get_monotonic_time();

    job_release(start("job0", t, UNIT, JOB_ON_ERROR_REPORT));    /* 1 unit/s */
    g_usleep(100 * 1000);
    job_cancel_all_sync();
    g_assert_null(job_find("job0"));
    g_assert_cmpint(g_get_monotonic_time() - t0, <, 2 * G_USEC_PER_SEC);
    g_assert_cmpint(t->done, <=, 1);
    drop_events();
    test_job_free(t);
}

int main(int argc, char **argv)
{
    static const JobEventSink sink = {
        .status_changed = on_status, .completed = on_completed, .cancelled = on_cancelled,
        .error = on_error,
    };

    g_test_init(&argc, &argv, NULL);
    events = g_async_queue_new_full(g_free);
    job_set_event_sink(&sink);
    g_test_add_func("/job/success", test_success);
    g_test_add_func("/job/failure-reported", test_failure_reported);
    g_test_add_func("/job/failure-ignored", test_failure_ignored);
    g_test_add_func("/job/failure-stop", test_failure_stop);
    g_test_add_func("/job/pause-resume-cancel", test_pause_resume_cancel);
    g_test_add_func("/job/rate-limit", test_rate_limit);
    g_test_add_func("/job/ids-and-blocker", test_ids_and_blocker);
    g_test_add_func("/job/cancel-all", test_cancel_all);
    return g_test_run();
}
