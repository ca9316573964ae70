"""The columns of every file a run writes, with their units or meanings, and the files' names. The order of a
dict is its CSV's; the context columns end every kind of row."""
from __future__ import annotations

# Column -> unit or meaning; the order is the CSV's. The context columns end every kind of row.
CONTEXT_COLUMNS: dict[str, str] = {
    "device": "cpu or cuda[:N]",
    "device_name": "GPU or CPU model",
    "dtype": "fp32, or the autocast dtype",
    "channels_last": "NHWC memory format",
    "compile": "torch.compile used",
    "cudnn_benchmark": "torch.backends.cudnn.benchmark",
    "tf32_matmul": "torch.backends.cuda.matmul.allow_tf32",
    "tf32_cudnn": "torch.backends.cudnn.allow_tf32",
    "matmul_precision": "torch.get_float32_matmul_precision(): highest (fp32) or high (TF32)",
    "threads": "torch.get_num_threads()",
    "pid": "the process that measured the row (an --isolate child's own)",
    "shards_on_host": "convbench sweeps measuring on this host when the row finished, this one included",
    "ceiling": "the measured peak that pct_peak and mfu are shares of: its figure, kernel, when it was measured and the load then",
    "torch": "torch version",
    "cuda": "CUDA version torch was built with",
    "cudnn": "cuDNN version",
    "convbench": "convbench version",
    "git_commit": "convbench source commit: from git in a checkout, else recorded when the wheel was built; unknown if neither",
    "timestamp": "UTC, when the row finished",
}

PROFILE_COLUMNS: dict[str, str] = {
    "model": "model name, or package.module:function",
    "family": "architecture family",
    "input_size": "input height = width, pixels",
    "input_shape": "C x H x W of one input image",
    "input_from": "where that input came from: the zoo, timm pretrained_cfg, torchvision's default weights, "
                  "--input-size, a user builder's declaration, or the default (3x224x224)",
    "batch_size": "images per forward",
    "mode": "eager, compile, graphs (CUDA graph replay) or compile+graphs (torch.compile mode=reduce-overhead)",
    "status": "ok; partial (a measure failed, see error); oom or error (not built or timed)",
    "error": "what failed: why a row is not ok",
    "note": "what a figure means in this row, or why a column is empty though nothing failed",
    "params": "parameters",
    "param_bytes": "bytes of parameters as stored (fp32)",
    "macs": "multiply-accumulates per image, conv + linear/matmul (the run's counter: dispatch or fvcore)",
    "other_flops": "FLOPs per image MACs leave out: normalisation, activation, pooling, softmax, element-wise "
                   "arithmetic, at the weights docs/profile.md gives (dispatch counter); 2 x macs + other_flops is "
                   "the forward's whole arithmetic",
    "acts": "conv + linear output elements per image",
    "unsupported_ops": "compute ops the counter saw but did not count, e.g. batch norm and pooling (op:calls)",
    "counter": "what counted MACs and activations: dispatch (meta device) or fvcore (JIT trace)",
    "saved_bytes": "bytes autograd saves in one training forward at this batch (unique storages, params included)",
    "saved_act_bytes": "saved_bytes without parameters, buffers and autocast's weight copies",
    "peak_mem_infer_bytes": "measured peak over baseline, inference forward",
    "peak_mem_train_bytes": "measured peak over baseline, forward + backward",
    "latency_ms_p50": "median latency of one forward at this batch, ms",
    "latency_ms_p90": "ms",
    "latency_ms_p99": "ms",
    "latency_ms_iqr": "interquartile range, ms",
    "latency_ms_mean": "ms",
    "latency_ms_min": "ms",
    "timed_iters": "timed iterations after warm-up",
    "noisy": "IQR / median above 0.10",
    "host_busy": "share of the machine's CPU time other processes used (or a hypervisor stole) while the row was timed",
    "busy": "host_busy above 0.10: timed on a busy machine, read with care",
    "throughput_img_s": "batch / median latency",
    "achieved_tflops": "2 x macs x batch / median latency, TFLOP/s",
    "intensity": "estimated FLOPs per byte: 2 x macs x batch over weights read once plus conv/linear outputs written and read once",
    "pct_peak": "achieved_tflops over this machine's measured peak for the dtype (convbench ceiling)",
    "bound": "compute or memory: which measured ceiling applies at this intensity",
    "device_ms": "CUDA: the GPU's busy time per forward, the union of the kernels torch.profiler records, ms (every mode)",
    "gpu_busy": "CUDA: device_ms / latency p50",
    "launch_bound": "CUDA: gpu_busy below 0.5, the host's launching decides the latency",
    "row_id": "this row's index in the run; samples.parquet (or samples.csv) holds its per-iteration timings",
    "instructions": "instructions one forward executes per image at this batch (valgrind's callgrind, one thread; "
                    "--metrics instructions)",
    "instructions_per_mac": "instructions over MACs: the executed work per unit of counted arithmetic",
    **CONTEXT_COLUMNS,
}

# Every compare row is a variant of a case against the case's baseline (its first variant).
COMPARE_COLUMNS: dict[str, str] = {
    "comparison": "factorization, asymmetric, reduction, grouped or pooling (designs: a user's own)",
    "case": "the design question: one baseline and its variants",
    "variant": "this row's design",
    "baseline": "the variant every ratio is taken against",
    "claim": "what the paper or the arithmetic says",
    "input_shape": "C x H x W of one input image",
    "batch_size": "images per forward",
    "mode": "eager, compile, graphs or compile+graphs",
    "status": "ok; oom or error (not measured, see error)",
    "error": "what failed",
    "note": "what a figure means in this row, or why a column is empty though nothing failed",
    "params": "parameters",
    "macs": "multiply-accumulates per image",
    "acts": "conv + linear output elements per image",
    "counter": "what counted MACs and activations: dispatch or fvcore",
    "claimed_ratio": "the paper's cost of the variant over the baseline's",
    "counted_ratio": "macs over the baseline's",
    "params_ratio": "params over the baseline's",
    "measured_ratio": "median of the paired latency ratios variant / baseline",
    "ratio_ci_low": "95% interval of measured_ratio, low end",
    "ratio_ci_high": "95% interval of measured_ratio, high end",
    "device_ms": "CUDA: the GPU's busy time per forward, ms",
    "gpu_busy": "CUDA: device_ms / latency p50",
    "launch_bound": "CUDA: gpu_busy below 0.5",
    "device_ratio": "CUDA: device_ms over the baseline's",
    "saving_realized": "(1 - measured_ratio) / (1 - counted_ratio): the share of the MAC saving the time realises",
    "verdict": "the comparison in words",
    "latency_ms_p50": "median latency of this variant in its pairs, ms (the baseline's row: over all its pairs)",
    "baseline_ms_p50": "median latency of the baseline in this variant's pairs, ms: measured_ratio is about p50 over it",
    "pct_peak": "achieved FLOP/s over this machine's measured peak for the dtype",
    "pairs": "interleaved timed pairs behind measured_ratio",
    "drift": "median of the last third of the pairs over the first third, this variant's time",
    "host_busy": "share of the machine's CPU time other processes used while the pairs were timed",
    "busy": "host_busy above 0.10: timed on a busy machine, read with care",
    "saved_act_bytes": "bytes of activations autograd saves in one training forward at this batch",
    "saved_act_ratio": "saved_act_bytes over the baseline's",
    "peak_mem_infer_bytes": "CUDA: measured peak over baseline, inference forward",
    "peak_mem_ratio": "peak_mem_infer_bytes over the baseline's",
    "max_abs_diff": "ResNeXt forms: largest difference of this form's output from the grouped form's, same weights",
    "row_id": "this row's index in the run; the samples file holds its paired timings",
    **CONTEXT_COLUMNS,
}

TRAIN_COLUMNS: dict[str, str] = {
    "run": "the run's label (a model, or a side of --compare)",
    "model": "model name, or package.module:function",
    "family": "architecture family",
    "data": "synthetic, cifar10 or folder, with the classes",
    "input_size": "input height = width, pixels",
    "batch_size": "images per step per process",
    "steps": "optimizer steps",
    "nproc": "processes (DistributedDataParallel when above 1)",
    "status": "ok; diverged (the loss became NaN or infinite); oom or error",
    "error": "what failed",
    "note": "what a figure means in this row, or why it cannot be taken at face value",
    "lr": "SGD learning rate",
    "seed": "seed for weights and data",
    "label_smoothing": "epsilon of label-smoothing regularisation (Inception-v3 section 7); 0: none",
    "aux_weight": "weight of each auxiliary classifier's loss; 0: trained without them (--aux-weight 0); empty: the network has none",
    "step_ms_p50": "median step time after the warm-up steps, ms",
    "step_ms_p90": "ms",
    "images_per_s": "batch / median step time, one process",
    "aggregate_images_per_s": "images per second over all processes",
    "scaling_efficiency": "aggregate_images_per_s over nproc x the one-process images_per_s",
    "train_flops_per_image": "FLOPs of one image's forward and backward, counted (2 per MAC)",
    "mfu": "train_flops_per_image x images_per_s over this machine's measured peak",
    "peak_mem_train_bytes": "measured peak over baseline after the warm-up steps",
    "first_loss": "loss of the first step",
    "final_loss": "mean loss of the last log_every steps",
    "final_train_acc": "mean batch accuracy of the last log_every steps",
    "heldout_acc_start": "accuracy on held-out data before training",
    "heldout_acc": "accuracy on held-out data after training",
    "wall_s": "seconds from the first step to the last",
    "host_busy": "share of the machine's CPU time other processes used during the steps (the most of any rank)",
    "busy": "host_busy above 0.10: trained on a busy machine, read the times with care",
    **CONTEXT_COLUMNS,
}

STEP_COLUMNS = ["run", "model", "nproc", "step", "loss", "batch_acc", "step_ms", "timestamp"]
SAMPLE_COLUMNS = ["row_id", "iteration", "latency_ms", "baseline_ms"]
LAYER_COLUMNS = ["model", "module", "params", "macs", "acts", "self_macs", "self_acts", "cpu_time_us", "device_time_us"]

# profile.md and compare.md: the columns a reader looks for; the CSV keeps every one.
PROFILE_READER_COLUMNS = ["model", "batch_size", "mode", "dtype", "params", "macs", "latency_ms_p50", "latency_ms_iqr",
                          "throughput_img_s", "achieved_tflops", "gpu_busy", "peak_mem_infer_bytes", "peak_mem_train_bytes",
                          "saved_act_bytes", "status", "error", "note"]
COMPARE_READER_COLUMNS = ["case", "variant", "batch_size", "mode", "macs", "claimed_ratio", "counted_ratio", "measured_ratio",
                          "ratio_ci_low", "ratio_ci_high", "device_ratio", "gpu_busy", "verdict", "status", "error"]

# The files of a results folder.
FORMATS = ("csv", "json", "md", "parquet")  # the rows file's formats: profile.csv, profile.json, ...
ENV_FILE = "env.json"
SAMPLES_CSV = "samples.csv"
SAMPLES_PARQUET = "samples.parquet"
LAYERS_CSV = "layers.csv"
STEPS_CSV = "train_steps.csv"
ROWS_FILE = {"profile": "profile.csv", "compare": "compare.csv", "train": "train.csv"}
COLUMNS = {"profile": PROFILE_COLUMNS, "compare": COMPARE_COLUMNS, "train": TRAIN_COLUMNS}
READER_COLUMNS = {"profile": PROFILE_READER_COLUMNS, "compare": COMPARE_READER_COLUMNS, "train": None}
