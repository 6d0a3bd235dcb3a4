// Uppy Dashboard + @uppy/tus pointed at sagestore's tus endpoint (another origin: CORS).
// Bundled by tests/test_console_interop.py with esbuild at test time; the settings come from the page URL.
import Uppy from "@uppy/core";
import Dashboard from "@uppy/dashboard";
import Tus from "@uppy/tus";
import "@uppy/core/css/style.css";
import "@uppy/dashboard/css/style.css";

const params = new URLSearchParams(location.hash.slice(1));
const uppy = new Uppy({ meta: { bucket: params.get("bucket") } })
  .use(Dashboard, { inline: true, target: "#uppy", hideProgressAfterFinish: false, proudlyDisplayPoweredByUppy: false })
  .use(Tus, {
    endpoint: `${params.get("server")}/api/v1/tus/`,
    headers: { Authorization: `Bearer ${params.get("token")}` },
    chunkSize: Number(params.get("chunk")),
    retryDelays: [100, 1000, 3000],
  });
window.uppyResult = null;
uppy.on("complete", (result) => {
  window.uppyResult = { successful: result.successful.map((file) => file.name), failed: result.failed.map((file) => String(file.error)) };
});
