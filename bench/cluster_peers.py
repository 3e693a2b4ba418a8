"""The peers of concur.cluster in bench/70_cluster.lua: Celery (Redis broker
and backend) and RQ, run as their users run them (workers started by their
own command lines, default settings), on the Redis given.

  cluster_peers.py speed SYSTEM URL N RT     trivial tasks/s (N submitted,
                                             then every result) and the round
                                             trip of one task (RT in a row)
  cluster_peers.py chaos SYSTEM N            N tasks through 4 workers, one
                                             killed (SIGKILL) every 0.5 s and
                                             restarted, Redis killed once: what
                                             was done, failed, lost

SYSTEM is celery, rq (its default forking worker) or rqsimple (rq's
SimpleWorker, no fork). Output: "key value" lines.
"""
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

PY = sys.executable

CELERY_APP = '''
import os
import time
from celery import Celery
url = os.environ["BENCH_REDIS"]
app = Celery("capp", broker=url, backend=url)
app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"],
                worker_hijack_root_logger=False)

@app.task
def noop(x):
    return x

@app.task
def effect(x, path):
    time.sleep(0.002)
    with open(path, "a") as f:
        f.write("%d\\n" % x)
    return 2 * x
'''

RQ_TASKS = '''
import time

def noop(x):
    return x

def effect(x, path):
    time.sleep(0.002)
    with open(path, "a") as f:
        f.write("%d\\n" % x)
    return 2 * x
'''


class Workers:
    """Worker processes of one system, each in its own process group (a
    SIGKILL of the group is a machine going away)."""

    def __init__(self, system, url, n, tmp):
        self.system, self.url, self.tmp = system, url, tmp
        self.procs = [self.start(i) for i in range(n)]

    def start(self, i):
        env = dict(os.environ, BENCH_REDIS=self.url, PYTHONPATH=self.tmp)
        if self.system == "celery":
            cmd = [PY, "-m", "celery", "-A", "capp", "worker", "--concurrency=1",
                   "-n", "w%d-%d@%%h" % (i, random.randrange(1 << 30)), "--loglevel=WARNING"]
        else:
            cmd = [PY, "-m", "rq.cli", "worker", "-u", self.url, "--path", self.tmp,
                   "--name", "w%d-%d" % (i, random.randrange(1 << 30)), "-q"]
            if self.system == "rqsimple":
                cmd += ["--worker-class", "rq.worker.SimpleWorker"]
        return subprocess.Popen(cmd, cwd=self.tmp, env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill(self, i):
        try:
            os.killpg(self.procs[i].pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.procs[i].wait()

    def restart(self, i):
        self.kill(i)
        self.procs[i] = self.start(i)

    def close(self):
        for i in range(len(self.procs)):
            self.kill(i)


def setup(tmp):
    with open(os.path.join(tmp, "capp.py"), "w") as f:
        f.write(CELERY_APP)
    with open(os.path.join(tmp, "rqtasks.py"), "w") as f:
        f.write(RQ_TASKS)
    sys.path.insert(0, tmp)


class System:
    """Submitting and collecting, the same way for both peers."""

    def __init__(self, system, url):
        self.system, self.url = system, url
        os.environ["BENCH_REDIS"] = url
        if system == "celery":
            import capp
            self.app = capp.app
            self.tasks = capp
        else:
            from redis import Redis
            from rq import Queue
            import rqtasks
            self.conn = Redis.from_url(url)
            self.queue = Queue(connection=self.conn)
            self.tasks = rqtasks

    def submit(self, name, *args):
        if self.system == "celery":
            return getattr(self.tasks, name).delay(*args)
        return self.queue.enqueue(getattr(self.tasks, name), *args)

    def wait(self, job, timeout=60):
        """Waits for one result (RQ has no blocking wait: it polls every ms)."""
        if self.system == "celery":
            return job.get(timeout=timeout)
        deadline = time.time() + timeout
        while time.time() < deadline:
            status = job.get_status(refresh=True)
            if status == "finished":
                return job.return_value() if hasattr(job, "return_value") else job.result
            if status == "failed":
                raise RuntimeError("job failed")
            time.sleep(0.001)
        raise TimeoutError("no result")

    def states(self, jobs):
        """'done' / 'failed' / 'waiting' for each job, read in bulk."""
        out = []
        if self.system == "celery":
            r = self.app.backend.client
            keys = [self.app.backend.get_key_for_task(j.id) for j in jobs]
            for i in range(0, len(keys), 1000):
                for raw in r.mget(keys[i:i + 1000]):
                    state = json.loads(raw)["status"] if raw else "PENDING"
                    out.append("done" if state == "SUCCESS" else
                               "failed" if state in ("FAILURE", "REVOKED") else "waiting")
        else:
            p = self.conn.pipeline()
            for j in jobs:
                p.hget("rq:job:" + j.id, "status")
            for st in p.execute():
                st = st.decode() if st else ""
                out.append("done" if st == "finished" else
                           "failed" if st in ("failed", "stopped", "canceled") else "waiting")
        return out


def speed(system, url, n, rt):
    tmp = tempfile.mkdtemp(prefix="concur-peer-")
    setup(tmp)
    s = System(system, url)
    workers = Workers(system, url, 2, tmp)
    try:
        s.wait(s.submit("noop", 1), timeout=60)         # both started
        t0 = time.perf_counter()
        jobs = [s.submit("noop", i) for i in range(n)]
        for j in jobs:
            s.wait(j, timeout=600)
        print("%s_tasks_s %f" % (system, n / (time.perf_counter() - t0)))
        t0 = time.perf_counter()
        for i in range(rt):
            s.wait(s.submit("noop", i))
        print("%s_rt_us %f" % (system, (time.perf_counter() - t0) / rt * 1e6))
    finally:
        workers.close()
        shutil.rmtree(tmp, ignore_errors=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Redis:
    """A redis-server as the Lua bench runs it: appendonly, fsync always."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="concur-peer-redis-")
        self.port = free_port()
        self.url = "redis://127.0.0.1:%d/0" % self.port
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--protected-mode", "no"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for line in self.proc.stdout:
            if b"Ready to accept connections" in line:
                break
        self.proc.stdout.close()

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def close(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def chaos(system, n):
    import threading
    tmp = tempfile.mkdtemp(prefix="concur-peer-")
    setup(tmp)
    effects = os.path.join(tmp, "effects")
    red = Redis()
    s = System(system, red.url)
    workers = Workers(system, red.url, 4, tmp)
    kills, redis_killed = 0, False
    jobs, refused = [], [0]
    t0 = time.time()

    def submit_all():      # submitting goes on while the kills begin
        for i in range(n):
            try:
                jobs.append(s.submit("effect", i, effects))
            except Exception:              # (Redis away: the caller is told)
                refused[0] += 1
    try:
        s.wait(s.submit("noop", 1), timeout=60)
        submitter = threading.Thread(target=submit_all)
        submitter.start()
        last_progress, moved_before, states = time.time(), -1, []
        # a worker killed every half second while tasks are pending; the end
        # when every task is done or failed, or nothing moved for 20 s
        while True:
            time.sleep(0.5)
            submitted = list(jobs)
            try:
                states = s.states(submitted)
            except Exception:              # Redis away (we killed it)
                states = None
            if states is not None:
                moved = sum(1 for x in states if x != "waiting") + refused[0]
                if moved != moved_before:
                    moved_before, last_progress = moved, time.time()
                if not submitter.is_alive() and moved == n:
                    break
            if time.time() - last_progress > 20:
                break
            workers.restart(random.randrange(4))
            kills += 1
            if not redis_killed and states is not None and moved >= n // 3:
                red.kill()
                red.start()
                redis_killed = True
        submitter.join()
        states = s.states(jobs)
    finally:
        workers.close()
        red.close()
    seen = {}
    if os.path.exists(effects):
        with open(effects) as f:
            for line in f:
                if line.strip():
                    seen[int(line)] = seen.get(int(line), 0) + 1
    shutil.rmtree(tmp, ignore_errors=True)
    print("%s_chaos_tasks %d" % (system, n))
    print("%s_chaos_done %d" % (system, states.count("done")))
    print("%s_chaos_failed %d" % (system, states.count("failed") + refused[0]))
    print("%s_chaos_lost %d" % (system, states.count("waiting")))
    print("%s_chaos_effects_missing %d" % (system, sum(1 for i in range(n) if i not in seen)))
    print("%s_chaos_ran_twice %d" % (system, sum(1 for c in seen.values() if c > 1)))
    print("%s_chaos_kills %d" % (system, kills))
    print("%s_chaos_redis_killed %d" % (system, 1 if redis_killed else 0))
    print("%s_chaos_seconds %f" % (system, time.time() - t0))


if __name__ == "__main__":
    if sys.argv[1] == "speed":
        speed(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        chaos(sys.argv[2], int(sys.argv[3]))
    sys.stdout.flush()
    os._exit(0)     # (Celery's results would complain at exit of the Redis we killed)
