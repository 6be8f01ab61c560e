document.getElementById("title").textContent = (window.__env__ || {}).PUBLIC_TITLE || "Buntime";
document.getElementById("route").textContent = location.pathname;
