"""Centre crops of the Set5 official inputs: LR crop of C x C at LR offset ((h-C)//2, (w-C)//2)
and the HR crop at sf times that offset (what `dkp dip --crop C` does), RGB PNG, GT kernel .txt."""
import os, sys, shutil
import numpy as np
from PIL import Image
src, dst, sf, c = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for sub in ('lr', 'hr', 'gt_k'):
    os.makedirs(os.path.join(dst, sub), exist_ok=True)
for f in sorted(os.listdir(os.path.join(src, f'x{sf}', 'lr'))):
    n = f[:-4]
    lr = np.array(Image.open(os.path.join(src, f'x{sf}', 'lr', f)).convert('RGB'))
    hr = np.array(Image.open(os.path.join(src, 'HR', f)).convert('RGB'))
    h, w = lr.shape[:2]
    hr = hr[:sf * h, :sf * w]
    assert hr.shape[0] == sf * h and hr.shape[1] == sf * w, (n, hr.shape, lr.shape)
    nh, nw = min(h, c), min(w, c)
    t, l = (h - nh) // 2, (w - nw) // 2
    Image.fromarray(lr[t:t + nh, l:l + nw]).save(os.path.join(dst, 'lr', f))
    Image.fromarray(hr[sf * t:sf * (t + nh), sf * l:sf * (l + nw)]).save(os.path.join(dst, 'hr', f))
    shutil.copyfile(os.path.join(src, f'x{sf}', 'gt_k', n + '.txt'), os.path.join(dst, 'gt_k', n + '.txt'))
    print(n, (nh, nw))
