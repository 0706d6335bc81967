// Files: the user's own folder of the files service (what WebDAV clients see at
// files.<cell>/<user>), without a second password. Browse folders, upload (with progress; the file
// is streamed to the cell), download, make a folder, rename or move, delete.
import { useCallback, useEffect, useState } from "react";
import { api, cookie, errorMessage } from "../api/client";
import { useSession } from "../session";
import { useConfigEditor } from "../config";
import { ServiceSwitch, cellDomain } from "../components/ServiceSwitch";
import { UsersOf } from "../components/UsersOf";

type Entry = { name: string; folder: boolean; size: number; modified: string };

const join = (folder: string, name: string) => (folder ? `${folder}/${name}` : name);
const size = (bytes: number) =>
  bytes < 1e3 ? `${bytes} B` : bytes < 1e6 ? `${(bytes / 1e3).toFixed(1)} kB` : `${(bytes / 1e6).toFixed(1)} MB`;
const contentUrl = (path: string) => `/api/files/content?path=${encodeURIComponent(path)}`;

export function FilesPage() {
  const { session } = useSession();
  const [folder, setFolder] = useState("");
  const [entries, setEntries] = useState<Entry[]>([]);
  const [message, setMessage] = useState("");
  const [problem, setProblem] = useState("");
  const [upload, setUpload] = useState<{ name: string; percent: number } | null>(null);
  const [newFolder, setNewFolder] = useState("");

  const load = useCallback(async () => {
    const { data, error } = await api.GET("/api/files", { params: { query: { path: folder } } });
    if (error) {
      setProblem(errorMessage(error));
      setEntries([]);
      return;
    }
    setProblem("");
    setEntries((data as { entries: Entry[] }).entries);
  }, [folder]);
  useEffect(() => {
    void load();
  }, [load]);

  // XMLHttpRequest, not fetch: only it reports an upload's progress.
  const send = (file: File) =>
    new Promise<void>((resolve) => {
      const request = new XMLHttpRequest();
      request.open("PUT", contentUrl(join(folder, file.name)));
      request.setRequestHeader("content-type", "application/octet-stream");
      request.setRequestHeader("x-csrf-token", cookie("csrf_token") ?? "");
      request.upload.onprogress = (e) => {
        if (e.lengthComputable) setUpload({ name: file.name, percent: Math.round((e.loaded * 100) / e.total) });
      };
      request.onload = () => {
        if (request.status >= 300) {
          let body: unknown;
          try {
            body = JSON.parse(request.responseText);
          } catch {
            body = undefined;
          }
          setMessage(`${file.name} was not uploaded: ${errorMessage(body)}`);
        } else {
          setMessage(`Uploaded ${file.name}.`);
        }
        resolve();
      };
      request.onerror = () => {
        setMessage(`${file.name} was not uploaded: the connection failed`);
        resolve();
      };
      request.send(file);
    });
  const uploadFiles = async (files: FileList | null) => {
    if (!files) return;
    for (const file of Array.from(files)) await send(file);
    setUpload(null);
    await load();
  };

  const makeFolder = async (event: React.FormEvent) => {
    event.preventDefault();
    if (!newFolder) return;
    const { error } = await api.POST("/api/files/folder", { body: { path: join(folder, newFolder) } });
    setMessage(error ? errorMessage(error) : `Made the folder ${newFolder}.`);
    if (!error) setNewFolder("");
    await load();
  };
  const rename = async (entry: Entry) => {
    const to = window.prompt(`New name or path (inside your folder) for ${entry.name}:`, join(folder, entry.name));
    if (!to || to === join(folder, entry.name)) return;
    const { error } = await api.POST("/api/files/move", { body: { from: join(folder, entry.name), to } });
    setMessage(error ? errorMessage(error) : `Moved ${entry.name} to ${to}.`);
    await load();
  };
  const remove = async (entry: Entry) => {
    const what = entry.folder ? `the folder ${entry.name} and everything in it` : entry.name;
    if (!window.confirm(`Delete ${what}?`)) return;
    const { error } = await api.DELETE("/api/files", { params: { query: { path: join(folder, entry.name) } } });
    setMessage(error ? errorMessage(error) : `Deleted ${entry.name}.`);
    await load();
  };

  const crumbs = folder ? folder.split("/") : [];
  return (
    <section aria-labelledby="files-title">
      <h1 id="files-title">Files</h1>
      <p>
        Your folder on the cell, {session?.user}. WebDAV clients (a file manager, a phone app) see the same files at
        the address of the files service, under /{session?.user}.
      </p>
      {session?.role === "admin" && <FilesService />}
      {problem && (
        <p className="error" role="alert">
          {problem}
        </p>
      )}
      <nav aria-label="folder">
        <button type="button" onClick={() => setFolder("")}>
          Your folder
        </button>
        {crumbs.map((part, i) => (
          <span key={crumbs.slice(0, i + 1).join("/")}>
            {" / "}
            <button type="button" onClick={() => setFolder(crumbs.slice(0, i + 1).join("/"))}>
              {part}
            </button>
          </span>
        ))}
      </nav>
      <div className="inline">
        <label className="field">
          Upload files
          <input type="file" multiple onChange={(e) => void uploadFiles(e.target.files)} disabled={Boolean(upload)} />
        </label>
        <form onSubmit={makeFolder} className="inline" aria-label="new folder">
          <label className="field">
            New folder
            <input value={newFolder} onChange={(e) => setNewFolder(e.target.value)} />
          </label>
          <button type="submit">Make folder</button>
        </form>
      </div>
      {upload && (
        <p role="status">
          Uploading {upload.name}: <progress max={100} value={upload.percent} aria-label={`upload of ${upload.name}`} />{" "}
          {upload.percent}%
        </p>
      )}
      {message && <p role="status">{message}</p>}
      <table>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Size</th>
            <th scope="col">Changed</th>
            <th scope="col">
              <span className="visually-hidden">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {entries.length === 0 && !problem && (
            <tr>
              <td colSpan={4}>This folder is empty.</td>
            </tr>
          )}
          {entries.map((entry) => (
            <tr key={entry.name}>
              <td>
                {entry.folder ? (
                  <button type="button" onClick={() => setFolder(join(folder, entry.name))}>
                    📁 {entry.name}
                  </button>
                ) : (
                  <a href={contentUrl(join(folder, entry.name))} download={entry.name}>
                    {entry.name}
                  </a>
                )}
              </td>
              <td>{entry.folder ? "" : size(entry.size)}</td>
              <td>{new Date(entry.modified).toLocaleString()}</td>
              <td className="inline">
                <button type="button" onClick={() => rename(entry)} aria-label={`Rename or move ${entry.name}`}>
                  Rename
                </button>
                <button type="button" onClick={() => remove(entry)} aria-label={`Delete ${entry.name}`}>
                  Delete
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

/** For an admin: whether the files service runs, who may use it, and its WebDAV address. */
function FilesService() {
  const { config, message, save } = useConfigEditor();
  if (!config) return null;
  const files = config.services?.files ?? {};
  return (
    <details className="card">
      <summary>The files service: on or off, who may use it, its address</summary>
      <p role="status">{message}</p>
      <ServiceSwitch
        name="Files"
        enabled={Boolean(files.enabled)}
        stops="WebDAV clients and this page lose the files; they stay on the cell."
        onChange={(on) => save((c) => (c.services.files.enabled = on), on ? "Files is on." : "Files is off.")}
      />
      <UsersOf config={config} service="files" save={save} />
      <p>
        WebDAV address: <code>https://files.{cellDomain(config)}/&lt;user&gt;/</code> (a file manager: “Connect to
        server”; a phone: any WebDAV app), with the person's user name and password.
      </p>
    </details>
  );
}
