"""The high-order degradation model of Real-ESRGAN: kernels, noise, JPEG, resizing, the chain, USM, crops, pool.

```python
cfg = DegradationConfig()                       # official x4plus; DegradationConfig.for_scale(2|4|8)
params = sample_degradation_params(cfg, rng)    # one sample, numpy Generator; default_collate stacks them
lq = degrade(usm_sharpen(gt), batched_params, cfg, scale, generator=None)
lr = degraded_lr(gt, cfg, scale, seed, "photo.png")  # the seeded LR every command makes of an image
gt_c, lq_c = paired_random_crop(gt, lq, gt_size, scale, generator=None)
lq, gt = TrainingPairPool(pool_size, batch_size)(lq, gt)
```
"""

from realesr.degrade.config import (
    FLAT_KEYS,
    KERNEL_TYPES,
    RESIZE_MODES,
    SUPPORTED_SCALES,
    BlurSettings,
    DegradationConfig,
    FinalSettings,
    StageSettings,
)
from realesr.degrade.crop import paired_random_crop
from realesr.degrade.jpeg import jpeg_compress, quantization_tables
from realesr.degrade.kernels import (
    KERNEL_TYPE_NAMES,
    circular_lowpass_kernel,
    filter2d,
    gaussian_kernel,
    generalized_gaussian_kernel,
    plateau_kernel,
    random_blur_kernel,
    random_final_sinc,
)
from realesr.degrade.noise import add_noise, gaussian_noise, poisson_noise
from realesr.degrade.pipeline import (
    degrade,
    sample_degradation_batch,
    sample_degradation_params,
    synthesize_pairs,
)
from realesr.degrade.pool import TrainingPairPool
from realesr.degrade.seeded import degraded_lr, image_generators
from realesr.degrade.sheet import contact_sheet, label_lines, tensor_to_pil
from realesr.degrade.usm import usm_sharpen

__all__ = [
    "FLAT_KEYS",
    "BlurSettings",
    "DegradationConfig",
    "FinalSettings",
    "StageSettings",
    "KERNEL_TYPES",
    "KERNEL_TYPE_NAMES",
    "RESIZE_MODES",
    "SUPPORTED_SCALES",
    "TrainingPairPool",
    "add_noise",
    "circular_lowpass_kernel",
    "contact_sheet",
    "degrade",
    "degraded_lr",
    "filter2d",
    "gaussian_kernel",
    "gaussian_noise",
    "image_generators",
    "generalized_gaussian_kernel",
    "jpeg_compress",
    "label_lines",
    "paired_random_crop",
    "plateau_kernel",
    "poisson_noise",
    "quantization_tables",
    "random_blur_kernel",
    "random_final_sinc",
    "sample_degradation_batch",
    "sample_degradation_params",
    "synthesize_pairs",
    "tensor_to_pil",
    "usm_sharpen",
]
