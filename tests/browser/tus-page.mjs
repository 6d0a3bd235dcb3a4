// tus-js-client in the browser with parallelUploads: 4 (tus concatenation) against sagestore (another origin).
import * as tus from "tus-js-client";

const params = new URLSearchParams(location.hash.slice(1));
window.tusResult = null;
document.getElementById("file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  const upload = new tus.Upload(file, {
    endpoint: `${params.get("server")}/api/v1/tus/`,
    headers: { Authorization: `Bearer ${params.get("token")}` },
    parallelUploads: 4,
    metadata: { bucket: params.get("bucket"), key: `parallel/${file.name}`, filetype: file.type || "application/octet-stream" },
    retryDelays: [100, 1000, 3000],
    onProgress: (sent, total) => { document.getElementById("progress").textContent = `${sent}/${total}`; },
    onSuccess: () => { window.tusResult = { ok: true, url: upload.url }; },
    onError: (error) => { window.tusResult = { ok: false, error: String(error) }; },
  });
  upload.start();
});
