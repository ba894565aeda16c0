/* escalate.c - stopping work that already runs: the cancellation ladder
 * (cf_executor_cancel) and the shutdown with a report
 * (cf_executor_shutdown_report).
 *
 * Design: both climb the same rungs, each only as far as needed: cancel
 * what has not started (a plain cancel), raise the cancel flag of what
 * runs and give it time (the cooperative request), then, where the
 * executor can (ex->escalation: a process pool), kill the worker. The
 * rungs are in the core, on the public future API; an executor supplies
 * only what the core cannot do itself (cf__escalation): list its
 * unfinished futures, kill the worker running one task, signal all its
 * workers. An executor without it (a custom one) still gets the ladder's
 * first two rungs, and a report by fallback (cf_executor_shutdown_timeout
 * with cancel_futures; only `still_running` counted, `exact` false).
 *
 * The report classifies the futures unfinished at the call by when they
 * ended: cancelled by the shutdown (never started), done before the
 * request to stop (completed), after it (stopped), or after a signal to
 * the workers with the pool's kill failure (killed); the rest is still
 * running. Each wait has a deadline; only the reaping of workers sent
 * SIGKILL is waited for without one (it cannot be refused).
 */
#include "core/core.h"

#include <stdlib.h>

/* ------------------------------------------------------------------------ */
/* The ladder                                                               */

static bool done(cf_future *f)
{
    return cf__state_done_for_result(cf__future_state(f));
}

static void wait_done(cf_future *f, int64_t deadline)
{
    cf__future_block(f, deadline, CF__CANCELLED_UNNOTIFIED);
}

/* Tells the executor that running tasks had their flags raised, so that
 * the request reaches tasks it runs elsewhere (a process pool's workers). */
static void stop_requested(cf_executor *ex)
{
    const cf__escalation *e = ex->escalation;
    if (e && e->stop_requested)
        e->stop_requested(ex->impl);
}

/* `f` runs (its flag raised): the grace period, then the kill. */
static cf_cancel_outcome escalate(cf_executor *ex, cf_future *f,
                                  double grace)
{
    int64_t deadline;
    cf__deadline_from_timeout(grace, &deadline);
    wait_done(f, deadline);
    if (done(f))
        return CF_CANCEL_STOPPED;
    const cf__escalation *e = ex->escalation;
    int rc = e && e->kill_task ? e->kill_task(ex->impl, f) : CF_ENOTSUP;
    if (rc == CF_ESTATE && done(f))
        return CF_CANCEL_STOPPED;
    if (rc != CF_OK && rc != CF_EAGAIN)
        return CF_CANCEL_STILL_RUNNING;
    /* Killed, or its result on the way (CF_EAGAIN): either ends it soon,
     * as the worker's end is always seen. */
    wait_done(f, CF__NO_DEADLINE);
    return cf_future_cancelled(f) ? CF_CANCEL_KILLED : CF_CANCEL_STOPPED;
}

int cf_executor_cancel(cf_executor *ex, cf_future *f, double grace,
                       cf_cancel_outcome *outcome)
{
    if (cf__executor_refused_in_worker(ex))
        return CF_EDEADLK;
    if (!ex || !f || isnan(grace) || grace < 0)
        return CF_EINVAL;
    /* A process pool's manager (its done-callbacks) completes the very
     * future the grace period would wait for. */
    if (cf__current_pool == ex && ex->escalation &&
        ex->escalation->kill_task)
        return CF_EDEADLK;
    cf_cancel_outcome o;
    if (done(f))
        o = CF_CANCEL_WAS_DONE;
    else if (cf_future_request_cancel(f))
        o = CF_CANCEL_QUEUED;
    else
        o = (stop_requested(ex), escalate(ex, f, grace));
    if (outcome)
        *outcome = o;
    return CF_OK;
}

/* ------------------------------------------------------------------------ */
/* The shutdown report                                                      */

static bool options_valid(const cf_shutdown_options *o)
{
    return !isnan(o->wait) && o->wait >= 0 && !isnan(o->grace) &&
           o->grace >= 0 && !isnan(o->kill_after) && o->kill_after >= 0;
}

/* The futures not yet done are fs[0..*left); waits for them until
 * `timeout` seconds pass (0: looks once), then moves the ones done to the
 * end and counts each: in *plain, or, with `kills`, in *kills when the
 * pool's kill failed it. */
static void settle(cf_future **fs, size_t *left, double timeout,
                   size_t *plain, size_t *kills)
{
    int64_t deadline;
    cf__deadline_from_timeout(timeout > 0 ? timeout : 0, &deadline);
    for (size_t i = 0; i < *left; i++)
        if (timeout > 0)
            wait_done(fs[i], deadline);
    for (size_t i = 0; i < *left;) {
        if (!done(fs[i])) {
            i++;
            continue;
        }
        bool killed = kills && !cf_future_cancelled(fs[i]) &&
                      cf__future_outcome(fs[i]) == CF_EBROKEN_PROCESS_POOL;
        (*(killed ? kills : plain))++;
        cf_future *t = fs[i];
        fs[i] = fs[--*left];
        fs[*left] = t;
    }
}

/* For executors the core cannot look into. */
static int report_fallback(cf_executor *ex, const cf_shutdown_options *o,
                           cf_shutdown_report *out)
{
    size_t unfinished = 0;
    double t = o->wait + o->grace;
    int rc = cf_executor_shutdown_timeout(ex, t > 0 ? t : 0, true,
                                          &unfinished);
    if (rc != CF_OK && rc != CF_ETIMEDOUT)
        return rc;
    *out = (cf_shutdown_report){.still_running = unfinished};
    return unfinished ? CF_ETIMEDOUT : CF_OK;
}

static void climb(cf_executor *ex, cf_future **fs, size_t n,
                  const cf_shutdown_options *o, cf_shutdown_report *r)
{
    const cf__escalation *e = ex->escalation;
    size_t left = n;
    for (size_t i = 0; i < n; i++)
        cf__future_cancel(fs[i]); /* only those not started */
    /* Done now: cancelled, or finished before the snapshot was taken
     * (counted as completed). */
    for (size_t i = 0; i < left;) {
        if (cf_future_cancelled(fs[i]) && done(fs[i])) {
            r->cancelled++;
            cf_future *t = fs[i];
            fs[i] = fs[--left];
            fs[left] = t;
        } else {
            i++;
        }
    }
    settle(fs, &left, o->wait, &r->completed, NULL);
    for (size_t i = 0; i < left; i++)
        cf_future_request_cancel(fs[i]);
    if (left)
        stop_requested(ex);
    /* The same through the executor (a thread pool raises the flags of
     * its running tasks), which also cancels what a submit racing the
     * close may have queued after the snapshot. */
    if (ex->ops->shutdown)
        ex->ops->shutdown(ex->impl, 0, true, NULL);
    settle(fs, &left, o->grace, &r->stopped, NULL);
    if (left && e->signal_workers) {
        e->signal_workers(ex->impl, false);
        settle(fs, &left, o->kill_after, &r->stopped, &r->killed);
        if (left) {
            e->signal_workers(ex->impl, true);
            settle(fs, &left, CF_FOREVER, &r->stopped, &r->killed);
        }
    }
    r->still_running = left;
}

int cf_executor_shutdown_report(cf_executor *ex,
                                const cf_shutdown_options *opts,
                                cf_shutdown_report *out)
{
    static const cf_shutdown_options defaults = {0};
    if (cf__executor_refused_in_worker(ex))
        return CF_EDEADLK;
    if (!ex || !out)
        return CF_EINVAL;
    if (!opts)
        opts = &defaults;
    if (!options_valid(opts))
        return CF_EINVAL;
    if (cf__current_pool == ex)
        return CF_EDEADLK; /* it would wait for its own thread */
    const cf__escalation *e = ex->escalation;
    if (!e || !e->unfinished)
        return report_fallback(ex, opts, out);
    /* Intake stops first, so the snapshot is the whole of the work. */
    atomic_store(&ex->shut_down, true);
    if (ex->ops->shutdown)
        ex->ops->shutdown(ex->impl, 0, false, NULL);
    cf_future **fs = NULL;
    size_t n = 0;
    if (e->unfinished(ex->impl, &fs, &n) != CF_OK)
        return CF_ENOMEM;
    cf_shutdown_report r = {.can_kill = e->signal_workers != NULL,
                            .exact = true};
    climb(ex, fs, n, opts, &r);
    for (size_t i = 0; i < n; i++)
        cf_future_release(fs[i]);
    free(fs);
    /* Nothing left running: what remains is workers leaving. */
    if (!r.still_running && ex->ops->shutdown)
        ex->ops->shutdown(ex->impl, CF_FOREVER, false, NULL);
    *out = r;
    return r.still_running ? CF_ETIMEDOUT : CF_OK;
}
