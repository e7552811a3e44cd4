// A small fixed-size thread pool. The calling thread takes part as worker 0, so a pool of n threads
// starts n - 1 helpers. Workers spin briefly before sleeping: kernels come in quick succession and a
// futex wake-up per call would cost more than many of the kernels themselves.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace unime {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return threads_; }

  // Runs fn(tid, nt) on nt = min(wanted, size()) threads, tid 0 on the caller; returns when all are done.
  void run(int wanted, const std::function<void(int, int)>& fn);

  // Splits [0, n) into chunks of at least `grain` items and runs fn(begin, end) on them in parallel.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void worker(int tid);

  int threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable done_cv_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  const std::function<void(int, int)>* job_ = nullptr;
  int job_threads_ = 0;
  std::mutex run_mu_;  // one job at a time
};

// The process-wide pool, sized by UNIME_NUM_THREADS or the number of cores.
ThreadPool& pool();
int default_threads();
void set_pool_threads(int n);

}  // namespace unime
