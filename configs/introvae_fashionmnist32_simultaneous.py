# The Fashion-MNIST recipe with the simultaneous update mode: L_G is evaluated with
# the encoder before its update, so one pass of the encoder over x_r and x_p serves
# both losses (3 encoder + 2 generator passes instead of 5 + 2). Everything else is
# introvae_fashionmnist32.py, so the two runs compare the update modes alone:
#   python tools/train.py configs/introvae_fashionmnist32.py --work-dir work_dirs/fm_paper
#   python tools/train.py configs/introvae_fashionmnist32_simultaneous.py --work-dir work_dirs/fm_sim
# and compare FID/fid (and KL, rec/PSNR) of the last validation (iteration 800) in the logs,
# or python tools/test.py CONFIG WORK_DIR/iter_800.pth --out metrics.json for each.
_base_ = ['introvae_fashionmnist32.py']

model = dict(update_mode='simultaneous')
